"""The ``pieceworks`` program: run `pieceworks.cli.main.main`, then end the process at once.

Tearing down an interpreter that has imported TaskFlow (a last full
collection, then a few hundred thousand objects freed one by one, module by
module) takes about as long as importing it did: 90 to 230 ms after a 1 MiB
backup, measured on 2026-11-30 on this project's 2-core machine, against 3
to 10 ms for an interpreter that imported nothing. A command line pays it on
every command. So the program ends as mypy's does (``mypy.util.hard_exit``):
once `main` has returned, it does what a normal exit does that is seen
outside the process (the ``atexit`` functions, logging's flush among them;
standard output and error flushed) and then calls ``os._exit``, skipping the
teardown. Nothing pieceworks writes waits for it: every file it keeps is
written, synced and closed before `main` returns, and the operating system
closes sockets and descriptors as it always does.

`end` falls back to a normal exit (``sys.exit``) while another non-daemon
thread runs, so that the exit waits for it as Python's does. `main`, called
inside a process (as the tests do), returns as ever: only the program ends
this way.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

from pieceworks.cli.main import main

__all__ = ["UNFLUSHED", "end", "run"]

#: The exit status when standard output cannot be flushed at the end (a
#: reader that went away): what CPython's own exit gives in that case.
UNFLUSHED = 120


def run() -> NoReturn:
    """The ``pieceworks`` entry point, and ``python -m pieceworks``: `main`, then `end`."""
    end(main())


def end(code: int) -> NoReturn:
    """End the process with exit status `code`, without tearing the interpreter down.

    Runs the ``atexit`` functions and flushes standard output and error
    first; a status of 0 becomes `UNFLUSHED` if standard output cannot be
    flushed. While another non-daemon thread is alive this is
    ``sys.exit(code)``, which waits for it.
    """
    current = threading.current_thread()
    if any(t is not current and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        if sys.stdout is not None:  # None: started with >&-
            sys.stdout.flush()
    except (OSError, ValueError):  # a closed pipe, or a closed stream
        code = code or UNFLUSHED
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    os._exit(code)
