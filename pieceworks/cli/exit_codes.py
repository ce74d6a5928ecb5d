"""Exit codes of the ``pieceworks`` command, and which error ends in which.

Every command documents the codes it can return in its ``--help`` epilog,
generated from this one table. `CliError` carries a message and a code
chosen by the command; `code_for` maps any other exception to its code.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from enum import IntEnum

from pieceworks.failpoints import FailpointSpecError
from pieceworks.protocols import (
    BackendNotFound,
    ConfigError,
    CorruptionError,
    DriverNotFound,
    InvalidDriver,
    InvalidName,
    NotFound,
    StoreNotFound,
    UnsupportedCodec,
    VolumeExists,
    WaitTimedOut,
)

__all__ = ["ALL", "CliError", "ExitCode", "code_for", "epilog"]


class ExitCode(IntEnum):
    """What a ``pieceworks`` process returns."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    CORRUPT = 4
    DEFERRED = 75  # EX_TEMPFAIL of sysexits.h: try again later
    TIMED_OUT = 124  # as timeout(1): gave up waiting
    INTERRUPTED = 130


_MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILED: (
        "the operation failed: every strategy failed, none could run, verify found"
        " problems, or a driver check failed"
    ),
    ExitCode.USAGE: (
        "usage or configuration error: bad arguments, a configuration file that does not"
        " parse or names an unknown driver, an invalid id, an unknown failpoint in"
        " PIECEWORKS_FAILPOINTS"
    ),
    ExitCode.NOT_FOUND: (
        "not found: unknown backend, store, volume or backup, or no registry match"
    ),
    ExitCode.CORRUPT: "corruption: stored data or a manifest fails its checksum",
    ExitCode.DEFERRED: (
        "deferred: garbage collection did not run because a backup in progress holds a"
        " lease; the message names it (owner, alive or not, age). Run it again later"
    ),
    ExitCode.TIMED_OUT: (
        "timed out: a wait gave up (jobs watch --timeout: the job, named by its id, had not"
        " ended after the seconds the message gives; it may still end: watch it again)"
    ),
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); the message says what was left behind",
}

#: Every exit code, for commands that can end in any of them.
ALL: tuple[ExitCode, ...] = tuple(ExitCode)


class CliError(Exception):
    """An error the command has already explained: print `message`, exit `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


def code_for(exc: BaseException) -> ExitCode:
    """The exit code an uncaught exception ends the process with."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, CorruptionError):
        return ExitCode.CORRUPT
    if isinstance(exc, WaitTimedOut):
        return ExitCode.TIMED_OUT
    # A configuration naming a driver that is not installed is a configuration error.
    if isinstance(
        exc, DriverNotFound | ConfigError | InvalidName | UnsupportedCodec | FailpointSpecError
    ):
        return ExitCode.USAGE
    if isinstance(exc, InvalidDriver | VolumeExists):  # VolumeExists: asks for --overwrite
        return ExitCode.USAGE
    if isinstance(exc, BackendNotFound | StoreNotFound | NotFound):
        return ExitCode.NOT_FOUND
    return ExitCode.FAILED


def epilog(codes: Iterable[ExitCode] = ALL) -> str:
    """The ``exit codes:`` paragraph of a ``--help`` page."""
    lines = ["exit codes:"]
    for c in sorted(set(codes)):
        lines += textwrap.wrap(
            _MEANING[c], width=79, initial_indent=f"  {int(c):<4} ", subsequent_indent=" " * 7
        )
    return "\n".join(lines)
