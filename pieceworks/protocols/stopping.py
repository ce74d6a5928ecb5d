"""The process was asked to stop: what data-path threads look at besides their own cancel.

A command stopped by Ctrl-C, SIGTERM or SIGHUP gets ``KeyboardInterrupt`` in
its main thread only (`pieceworks.cli.signals`). Work running on other
threads does not see it: TaskFlow's ``parallel`` engine runs a flow's tasks
on a thread pool and, as the interrupt unwinds, waits for them
(``ParallelActionEngine`` stops its executor with ``wait=True``), so a
restore ran on to its end, and could commit its volume after the command
had said it would not. The command line's signal handlers call
`request_stop` before raising; the chunk pipeline's loops check
`stop_requested` wherever they check their own cancel event, and stop with
`OperationCancelled` at the next chunk.

This is process-wide on purpose, as a signal is. A process that runs several
flows at once and must stop them one by one (a conductor) gives each its own
cancel event instead and never calls `request_stop`.
"""

from __future__ import annotations

import threading
from typing import Final

__all__ = ["clear_stop", "request_stop", "stop_requested"]

_STOP: Final = threading.Event()


def request_stop() -> None:
    """Ask every data-path loop of this process to stop at its next chunk."""
    _STOP.set()


def stop_requested() -> bool:
    """Whether `request_stop` was called since the last `clear_stop`."""
    return _STOP.is_set()


def clear_stop() -> None:
    """Forget a stop request: a new command starts (the tests run many in one process)."""
    _STOP.clear()
