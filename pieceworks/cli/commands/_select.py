"""Choosing backups on the command line: ``--volume``, ``--label``, ``--since``, ...

Shared by ``list``, ``forget``, ``stats`` and ``backup --label``. The option
parsers (`label`, `point_in_time`) are argparse ``type=`` functions and
import nothing heavy; `load_backups` reads the store's manifests and is
called from a command's run function.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pieceworks.cli.ids import id_type

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.common_algorithms.format.manifest import Manifest, UnreadableManifest
    from pieceworks.protocols import IObjectStore

__all__ = [
    "Backups",
    "add_filter_options",
    "label",
    "label_filters",
    "labels_option",
    "load_backups",
    "point_in_time",
    "select",
]

_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_AGO = re.compile(r"([0-9]+)\s*([smhdw])", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def label(text: str) -> tuple[str, str]:
    """``K=V`` as ``(K, V)``; argparse error if there is no ``=`` or K is not a valid key."""
    key, sep, value = text.partition("=")
    if not sep or not _LABEL_KEY.fullmatch(key):
        raise argparse.ArgumentTypeError(
            f"invalid label {text!r}: use KEY=VALUE, KEY of 1-64 letters, digits, '.', '_'"
            " or '-' starting with a letter or digit"
        )
    if len(value) > 256 or not value.isprintable():
        raise argparse.ArgumentTypeError(
            f"invalid label {text!r}: the value must be at most 256 printable characters"
        )
    return key, value


def labels_option(pairs: Sequence[tuple[str, str]] | None) -> dict[str, str]:
    """Repeated ``--label`` values as a dict; `argparse.ArgumentTypeError` on a repeated key."""
    out: dict[str, str] = {}
    for key, value in pairs or ():
        if key in out and out[key] != value:
            raise argparse.ArgumentTypeError(f"label {key!r} given twice with different values")
        out[key] = value
    return out


def point_in_time(text: str) -> float:
    """A Unix time from ISO 8601 (UTC unless it says), a Unix time, or an age like ``7d``.

    Ages count back from now: ``30m``, ``12h``, ``7d``, ``2w`` (also
    combined, ``1d12h``).
    """
    stripped = text.strip()
    # Digits are a Unix time (0 included), except eight that make a date (20261130,
    # ISO 8601's basic form): a Unix time of eight digits is before 1974.
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", stripped, re.ASCII) and not _basic_date(stripped):
        return float(stripped)
    if re.fullmatch(r"([0-9]+\s*[smhdw]\s*)+", stripped, re.ASCII):
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _AGO.findall(stripped))
        return time.time() - seconds
    try:
        when = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use an ISO 8601 date or time (2026-11-30,"
            " 2026-11-30T12:00:00Z; UTC unless a zone is given), a Unix time, or an age"
            " such as 12h, 7d or 2w"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _basic_date(text: str) -> bool:
    """Whether `text` is a date in ISO 8601's basic form, ``YYYYMMDD``."""
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return len(text) == 8


def add_filter_options(parser: argparse.ArgumentParser, *, times: bool = True) -> None:
    """``--volume`` and ``--label`` (repeatable), and with `times` ``--since``/``--until``."""
    parser.add_argument(
        "--volume",
        dest="volumes",
        metavar="ID",
        type=id_type("volume id"),
        action="append",
        help="only backups of this volume (repeatable)",
    )
    parser.add_argument(
        "--label",
        dest="labels",
        metavar="K=V",
        type=label,
        action="append",
        help="only backups carrying this label (repeatable: all must match)",
    )
    if times:
        parser.add_argument(
            "--since",
            type=point_in_time,
            metavar="TIME",
            help="only backups created at or after TIME (ISO 8601 in UTC, a Unix time, or an"
            " age: 7d)",
        )
        parser.add_argument(
            "--until",
            type=point_in_time,
            metavar="TIME",
            help="only backups created before TIME (ISO 8601 in UTC, a Unix time, or an age: 7d)",
        )


def label_filters(args: argparse.Namespace) -> dict[str, str]:
    """The ``--label`` filters of `args` (a usage error if one key has two values)."""
    from pieceworks.cli.exit_codes import CliError, ExitCode  # noqa: PLC0415

    try:
        return labels_option(getattr(args, "labels", None))
    except argparse.ArgumentTypeError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None


def select(
    manifests: Iterable[Manifest],
    *,
    volumes: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    since: float | None = None,
    until: float | None = None,
    strategies: Sequence[str] | None = None,
) -> list[Manifest]:
    """The manifests matching every filter given (None: no filter on that)."""
    out = []
    for m in manifests:
        if volumes and m.volume_id not in volumes:
            continue
        if labels and any(m.labels.get(k) != v for k, v in labels.items()):
            continue
        if since is not None and m.created < since:
            continue
        if until is not None and m.created >= until:
            continue
        if strategies and m.strategy not in strategies:
            continue
        out.append(m)
    return out


@dataclass(frozen=True)
class Backups:
    """The readable manifests of a store, oldest first, and those that cannot be read."""

    manifests: list[Manifest]
    unreadable: list[UnreadableManifest]

    @property
    def damaged(self) -> dict[str, str]:
        """Backup id -> why its manifest cannot be read."""
        return {u.backup_id: u.reason for u in self.unreadable}


def load_backups(ctx: Context, objects: IObjectStore) -> Backups:
    """Read every manifest of the store; each one that cannot be read is warned about."""
    from pieceworks.common_algorithms.format.manifest import scan_manifests  # noqa: PLC0415

    scan = scan_manifests(objects)
    for bad in scan.unreadable:
        ctx.out.warn(bad.reason)
    return Backups(list(scan.manifests), list(scan.unreadable))
