"""Everything the command prints: text, tables and JSON on stdout, messages on stderr.

All of it goes through the `Masker`, so no configured secret is ever
printed. Figures use binary units for sizes (MiB) and decimal megabytes per
second for throughput (MB/s), as the benchmarks in DESIGN.md do.

JSON messages name their kind, as restic's do: the document a command
prints on stdout has ``"message_type": "summary"`` (each row of the arrays
``list``, ``volumes`` and ``find`` print has its own kind: ``backup``,
``volume``, ``registration``), and a failure under ``--json`` ends with one
line on stderr, ``{"message_type": "exit_error", "code", "reference",
"message", ...}`` (`pieceworks.cli.exit_codes.Failure`), instead of the
``pieceworks: error:`` line.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.masking import Masker

if TYPE_CHECKING:
    from pieceworks.cli.exit_codes import Failure

__all__ = [
    "Output",
    "human_bytes",
    "iso_time",
    "mb_per_s",
    "table",
]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
#: The fields of an ``exit_error`` that are never masked (fixed names, not data).
_STABLE = ("message_type", "code", "reference")


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``; bytes below 1 KiB as an integer."""
    value, unit = float(n), 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def mb_per_s(nbytes: float, seconds: float) -> float:
    """Throughput in MB/s (10**6 bytes per second); 0 when no time passed."""
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0


def iso_time(timestamp: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second (``2025-01-31T12:00:00Z``)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()
) -> str:
    """A plain aligned table; columns whose index is in `right` are right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [
            (c.rjust(w) if i in right else c.ljust(w))
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


class Output:
    """Where a command's results go, masked, as text or JSON.

    With `json_mode` a command prints exactly one JSON document (`data`)
    and `text` prints nothing; `quiet` silences `text` and `note` as well
    but never the JSON document or errors.
    """

    def __init__(
        self,
        masker: Masker,
        *,
        json_mode: bool = False,
        quiet: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.masker = masker
        self.json_mode = json_mode
        self.quiet = quiet
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        #: Why the command is about to return a failing code (`explain`), if it said.
        self.explanation: tuple[str, str, str] | None = None

    def text(self, text: str = "") -> None:
        """A line (or lines) of human output on stdout, unless JSON or quiet."""
        if not self.json_mode and not self.quiet:
            self._print(self.masker.text(text) + "\n")

    def result(self, text: str) -> None:
        """Human output that is the point of the command: printed even with --quiet."""
        if not self.json_mode:
            self._print(self.masker.text(text) + "\n")

    def data(self, value: Any, message_type: str = "summary") -> None:
        """The command's JSON document on stdout (only in JSON mode).

        An object gets ``"message_type"`` (first, unless it has one); in an
        array, each object row gets it (`message_type` names the row's kind).
        """
        if self.json_mode:
            text = json.dumps(self.masker.data(_typed(value, message_type)), indent=2)
            self._print(text + "\n")

    def note(self, text: str) -> None:
        """A remark on stderr (``pieceworks: ...``), unless quiet."""
        if not self.quiet:
            self._write(f"pieceworks: {text}")

    def warn(self, text: str) -> None:
        """A warning on stderr, printed even when quiet."""
        self._write(f"pieceworks: warning: {text}")

    def error(self, text: str) -> None:
        """The one-line error a failing command ends with."""
        one_line = " ".join(text.split())
        self._write(f"pieceworks: error: {one_line}")

    def explain(self, reference: str, message: str, hint: str = "") -> None:
        """Why the failing code the command is about to return (its ``exit_error`` under --json)."""
        self.explanation = (reference, message, hint)

    def fail(self, failure: Failure) -> None:
        """End a failing command: the ``exit_error`` line (--json) or the error line."""
        if self.json_mode:
            plain = failure.to_dict()
            # The kind and the reference are fixed names, never user data: not masked,
            # so a script can test them whatever the passphrase.
            doc = {**self.masker.data(plain), **{k: plain[k] for k in _STABLE}}
            text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
            self._message(text + "\n")
        else:
            self.error(failure.message)

    def _write(self, text: str) -> None:
        """A message line on stderr, masked."""
        self._message(self.masker.text(text) + "\n")

    def _message(self, text: str) -> None:
        """Write to stderr; a closed or failing stderr loses the message, nothing else."""
        if self.stderr is None:  # started with 2>&-
            return
        with contextlib.suppress(OSError, ValueError):
            self.stderr.write(text)
            self.stderr.flush()

    def _print(self, text: str) -> None:
        """Write to stdout: `CliError` (exit 1, ``output-error``) if it is closed or fails.

        A reader that went away (``BrokenPipeError``) is `pieceworks.cli.main`'s to
        handle: it had what it wanted. Anything else (``> /dev/full``, ``>&-``) means
        the output is lost: the command says so instead of ending with an
        unexpected error; what it did before stands.
        """
        if self.stdout is None:
            raise CliError(
                "standard output is closed: the command's output cannot be written",
                ExitCode.FAILED,
                reference="output-error",
                hint="run it again with standard output open (not >&-)",
            )
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise CliError(
                f"cannot write the command's output to standard output: {exc.strerror or exc}",
                ExitCode.FAILED,
                reference="output-error",
                hint="free space or fix the file standard output goes to, and run it again",
            ) from None


def _typed(value: Any, message_type: str) -> Any:
    """`value` with ``message_type`` in it (an object) or in each of its object rows."""
    if isinstance(value, dict):
        return value if "message_type" in value else {"message_type": message_type, **value}
    if isinstance(value, list):
        return [_typed(row, message_type) if isinstance(row, dict) else row for row in value]
    return value
