"""SIGTERM stops a command as Ctrl-C does.

Python turns Ctrl-C (SIGINT) into ``KeyboardInterrupt``, and every command
that leaves something behind when stopped halfway (a backup's temporary
snapshot and lease, a restore's partial volume, a replication's copy) undoes
it on that exception and says what is left (`pieceworks.cli.interrupts`).
SIGTERM, what ``kill``, a service manager or a container runtime sends,
ends the process at once by default: nothing is undone, the lease and the
run journal stay until ``recover``. While `terminate_as_interrupt` lasts,
SIGTERM raises `Terminated`, a ``KeyboardInterrupt``, in the main thread
instead, so that it takes the same path and ends with the same exit code
(130) and message.

Commands that serve until stopped (``conductor``, ``worker``, ``target``)
set their own SIGTERM handler, which replaces this one while they run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "signals_ignored", "terminate_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the command stops as on Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` while this lasts (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while cleaning up after the first of them (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
