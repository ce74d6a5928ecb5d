"""SIGTERM stops a command as Ctrl-C does.

Python turns Ctrl-C (SIGINT) into ``KeyboardInterrupt``, and every command
that leaves something behind when stopped halfway (a backup's temporary
snapshot and lease, a restore's partial volume, a replication's copy) undoes
it on that exception and says what is left (`pieceworks.cli.interrupts`).
Each of them (Ctrl-C too) also calls `pieceworks.protocols.stopping.request_stop`,
so that data-path loops running on other threads (TaskFlow's parallel engine)
stop at their next chunk instead of running on. SIGTERM, what ``kill``, a
service manager or a container runtime sends,
ends the process at once by default: nothing is undone, the lease and the
run journal stay until ``recover``; so does SIGHUP, what a command gets when
its terminal goes away (an ssh connection that drops, a closed window).
While `terminate_as_interrupt` lasts, both raise `Terminated`, a
``KeyboardInterrupt``, in the main thread instead, so that they take the
same path and end with the same exit code (130) and message. A signal the
command was started ignoring (``nohup`` ignores SIGHUP) stays ignored.

Commands that serve until stopped (``conductor``, ``worker``, ``target``)
set their own SIGTERM handler, which replaces this one while they run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from pieceworks.protocols.stopping import clear_stop, request_stop

__all__ = [
    "STOPPING",
    "Terminated",
    "signals_deferred",
    "signals_ignored",
    "terminate_as_interrupt",
]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: the command stops as on Ctrl-C."""


#: The signals that stop a command as Ctrl-C does (`terminate_as_interrupt`).
STOPPING = (signal.SIGTERM, signal.SIGHUP)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    request_stop()
    raise Terminated()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    request_stop()
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Terminated` while this lasts (main thread only; elsewhere
    a no-op); one of them ignored when the command started (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    clear_stop()
    previous = {
        sig: signal.signal(sig, _raise_terminated)
        for sig in STOPPING
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear_stop()


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C, SIGTERM and SIGHUP while cleaning up after the first of them (main
    thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, *STOPPING)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends, then stop as they would have.

    For a short step that must not be cut in half but after which the
    command should stop (removing a few manifests before a long collection):
    the first signal arriving meanwhile is remembered and, once the block
    has ended normally, raised as the handlers of `terminate_as_interrupt`
    raise it (``KeyboardInterrupt`` for Ctrl-C, else `Terminated`), after
    `request_stop`. `signals_ignored` threw it away: the command then ran its
    whole collection and exited 0. A signal ignored when the block starts
    (``nohup``) stays ignored. Main thread only; elsewhere a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        arrived.append(signum)

    previous = {
        sig: signal.signal(sig, hold)
        for sig in (signal.SIGINT, *STOPPING)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if arrived:
        request_stop()
        if arrived[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated()
