"""Exit codes of the ``pieceworks`` command, and which error ends in which.

Every command documents the codes it can return in its ``--help`` epilog,
generated from this one table. `CliError` carries a message and a code
chosen by the command; `code_for` maps any other exception to its code.

Under ``--json`` a failure ends with one `Failure` (``exit_error``) on
stderr: the code, a stable kebab-case ``reference`` naming the kind of
failure (the error class's `PieceworksError.reference`, a `CliError`'s own,
or the code's), the message, a hint and the error's data (`failure_for`).

A corrupt chunk exits 1 from ``verify`` and 4 from ``restore``: finding
damaged chunks is what verify is for, so its report is a result (exit 1,
"verify found problems", with each chunk named), while a restore that meets
one stops without writing the volume, and that is corruption (4), as is a
damaged manifest for every command.

A configured store that does not exist (`StoreMissing`: no directory,
container or bucket) exits 3, as an unknown store does: it is the same
mistake (a misspelt name) one level down, and ``list`` or ``check`` exiting
0 on an empty store made in its place would vouch for a store that is not
the operator's. Nothing is created (`pieceworks.cli.context.Context.store`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from pieceworks.failpoints import FailpointRaised, FailpointSpecError
from pieceworks.protocols import (
    BackendNotFound,
    ConfigError,
    CorruptionError,
    DriverNotFound,
    InvalidDriver,
    InvalidName,
    NotFound,
    PieceworksError,
    StoreNotFound,
    UnsupportedCodec,
    VolumeExists,
    WaitTimedOut,
)

__all__ = ["ALL", "CliError", "ExitCode", "Failure", "code_for", "epilog", "failure_for"]


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
        "not found: unknown backend, store, volume or backup, a configured store that does not"
        " exist (its directory, container or bucket; only backup, copy's target, replicate,"
        " key init and demo create one), or no registry match"
    ),
    ExitCode.CORRUPT: "corruption: stored data or a manifest fails its checksum",
    ExitCode.DEFERRED: (
        "deferred: garbage collection did not run because a backup (or a restore, verify,"
        " copy or check) in progress holds a lease; the message names it (owner, alive or"
        " not, age). Run it again later"
    ),
    ExitCode.TIMED_OUT: (
        "timed out: a wait gave up (jobs watch --timeout: the job, named by its id, had not"
        " ended after the seconds the message gives; it may still end: watch it again)"
    ),
    ExitCode.INTERRUPTED: (
        "interrupted (Ctrl-C, or SIGTERM or SIGHUP: the same cleanup); the message says what was"
        " left behind"
    ),
}

#: Every exit code, for commands that can end in any of them.
ALL: tuple[ExitCode, ...] = tuple(ExitCode)

#: The reference of a failure that nothing more specific names, by exit code.
CODE_REFERENCES: dict[ExitCode, str] = {
    ExitCode.FAILED: "failed",
    ExitCode.USAGE: "usage-error",
    ExitCode.NOT_FOUND: "not-found",
    ExitCode.CORRUPT: "corruption",
    ExitCode.DEFERRED: "deferred",
    ExitCode.TIMED_OUT: "timed-out",
    ExitCode.INTERRUPTED: "interrupted",
}

#: The message of a command that returned the code with no more specific explanation.
_RETURNED: dict[ExitCode, str] = {
    ExitCode.FAILED: "the command failed; its summary says why",
    ExitCode.USAGE: "usage or configuration error",
    ExitCode.NOT_FOUND: "not found",
    ExitCode.CORRUPT: "corruption found; the summary says where",
    ExitCode.DEFERRED: "deferred: a run in progress holds a lease; run it again later",
    ExitCode.TIMED_OUT: "timed out",
    ExitCode.INTERRUPTED: "interrupted",
}


class CliError(Exception):
    """An error the command has already explained: print `message`, exit `code`.

    `reference` (kebab-case) names the kind of failure for ``--json``
    consumers; default: the code's (`CODE_REFERENCES`). `hint`: what to do.
    """

    def __init__(
        self,
        message: str,
        code: ExitCode = ExitCode.FAILED,
        *,
        reference: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reference = reference or CODE_REFERENCES.get(code, "failed")
        self.hint = hint


@dataclass(frozen=True)
class Failure:
    """How a command failed, as ``--json`` prints it (restic's ``exit_error``, pip's reference).

    `code` is the exit code; `reference` a stable kebab-case name of the kind
    of failure; `context` the error's data (JSON values), may be empty.
    """

    code: ExitCode
    reference: str
    message: str
    hint: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def returned(cls, code: ExitCode) -> Failure:
        """A command returned `code` (its summary, if any, was printed) without explaining."""
        return cls(code, CODE_REFERENCES.get(code, "failed"), _RETURNED.get(code, "failed"))

    def to_dict(self) -> dict[str, Any]:
        """``{"message_type": "exit_error", "code", "reference", "message"}`` (+ hint, context)."""
        doc: dict[str, Any] = {
            "message_type": "exit_error",
            "code": int(self.code),
            "reference": self.reference,
            "message": self.message,
        }
        if self.hint:
            doc["hint"] = self.hint
        if self.context:
            doc["context"] = dict(self.context)
        return doc


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


def failure_for(exc: BaseException, message: str) -> Failure:
    """The `Failure` an uncaught exception ends the command with (`message`: its text)."""
    code = code_for(exc)
    if isinstance(exc, CliError):
        return Failure(code, exc.reference, message, exc.hint)
    if isinstance(exc, PieceworksError):
        return Failure(code, type(exc).reference, message, type(exc).hint, _context(exc))
    if isinstance(exc, KeyboardInterrupt):
        return Failure(code, "interrupted", message)
    if isinstance(exc, FailpointRaised | FailpointSpecError):
        reference = "failpoint" if isinstance(exc, FailpointRaised) else "failpoint-spec"
        return Failure(code, reference, message)
    return Failure(
        code,
        "unexpected-error",
        message,
        "run with -vv for the details",
        {"type": type(exc).__name__},
    )


_SKIP = object()


def _jsonable(value: object, depth: int = 0) -> object:
    """`value` as JSON data (``to_dict()`` for objects that have it), or `_SKIP`."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if depth > 4:
        return _SKIP
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            return _jsonable(to_dict(), depth + 1)
        except TypeError:  # a to_dict that needs arguments
            return _SKIP
    if isinstance(value, Mapping):
        items = {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _SKIP}
    if isinstance(value, list | tuple | set | frozenset):
        values = [_jsonable(v, depth + 1) for v in value]
        # A list missing some of its items would misstate the error (NoMatch's three
        # closest registrations as []): left out whole.
        return _SKIP if _SKIP in values else values
    return _SKIP


def _context(exc: BaseException) -> dict[str, Any]:
    """The error's public attributes that are JSON data (``offset``, ``problems``...)."""
    found = {k: _jsonable(v) for k, v in vars(exc).items() if not k.startswith("_")}
    return {k: v for k, v in found.items() if v is not _SKIP}


def epilog(codes: Iterable[ExitCode] = ALL) -> str:
    """The ``exit codes:`` paragraph of a ``--help`` page."""
    lines = ["exit codes:"]
    for c in sorted(set(codes)):
        lines += textwrap.wrap(
            _MEANING[c], width=79, initial_indent=f"  {int(c):<4} ", subsequent_indent=" " * 7
        )
    return "\n".join(lines)
