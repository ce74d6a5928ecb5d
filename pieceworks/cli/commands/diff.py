"""``pieceworks diff ID1 ID2``: the byte ranges in which two backups of a volume differ.

Computed from the two manifests' chunk lists alone
(`common_algorithms.inspect.diff`): no chunk data is read.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.ids import id_type

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms.format.manifest import Manifest
    from pieceworks.common_algorithms.inspect import DiffReport

__all__ = ["add_arguments", "run_diff"]

DESCRIPTION = """\
Compare two backups of one volume from their manifests (no data is read) and
print the byte ranges of ID2 that differ from ID1: changed, added (ID2 is
larger) or removed (ID2 is smaller). With the same chunk size (incrementals
keep it) the ranges are exact to the chunk; with different chunk sizes they
may also cover equal bytes (the output says so). --all-volumes compares
backups of different volumes too (volumes of one name on two backends are
two volumes). Exit 0 whether or not they differ."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT)


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``diff``."""
    parser.describe(DESCRIPTION, CODES)
    backup_id = id_type("backup id")  # an empty or invalid id: a usage error, as elsewhere
    parser.add_argument(
        "first", metavar="ID1", type=backup_id, help="the backup to compare against"
    )
    parser.add_argument("second", metavar="ID2", type=backup_id, help="the backup compared")
    parser.add_argument(
        "--all-volumes",
        action="store_true",
        help="allow backups of two different volumes",
    )


def _volume(m: Manifest) -> str:
    """``volume 'db' of backend 'a'``: a volume id names a volume of its backend only."""
    return f"volume '{m.volume_id}' of backend '{m.backend}'"


def _text(d: DiffReport, a: Manifest, b: Manifest) -> str:
    """The text of `d`, the diff of backup `b` against `a`."""
    from pieceworks.cli.output import human_bytes  # noqa: PLC0415

    if (a.backend, a.volume_id) == (b.backend, b.volume_id):
        head = f"backup {d.b} against {d.a} (volume '{d.volume_id}'):"
    elif a.backend == b.backend:  # --all-volumes: name both
        head = f"backup {d.b} (volume '{b.volume_id}') against {d.a} (volume '{a.volume_id}'):"
    else:
        head = f"backup {d.b} ({_volume(b)}) against {d.a} ({_volume(a)}):"
    if d.identical:
        return f"{head} identical ({human_bytes(d.size_b)})"
    lines = [
        f"{head} {human_bytes(d.bytes_differing)} differ in {len(d.ranges)} range(s)"
        + ("" if d.exact else " (different chunk sizes: ranges may include equal bytes)")
    ]
    if d.size_a != d.size_b:
        lines.append(f"  size {human_bytes(d.size_a)} -> {human_bytes(d.size_b)}")
    lines += [
        f"  {r.kind:<8} {r.offset:>14} +{r.length:<12} ({human_bytes(r.length)})" for r in d.ranges
    ]
    return "\n".join(lines)


def run_diff(args: argparse.Namespace, ctx: Context) -> int:
    """Print the ranges that differ; exit 3 for an unknown backup, 4 for a damaged manifest."""
    from pieceworks.common_algorithms.format.manifest import read_manifest  # noqa: PLC0415
    from pieceworks.common_algorithms.inspect import diff_manifests  # noqa: PLC0415

    store = ctx.store()
    a = read_manifest(store.objects, args.first)
    b = read_manifest(store.objects, args.second)
    if (a.backend, a.volume_id) != (b.backend, b.volume_id) and not args.all_volumes:
        named = (
            (f"volume '{a.volume_id}'", f"volume '{b.volume_id}'")
            if a.backend == b.backend
            else (_volume(a), _volume(b))
        )
        raise CliError(
            f"backups {a.backup_id} ({named[0]}) and {b.backup_id} ({named[1]}) are of"
            " different volumes: add --all-volumes to compare them",
            ExitCode.USAGE,
        )
    result = diff_manifests(a, b)
    ctx.out.data(result.to_dict())
    ctx.out.result(_text(result, a, b))
    return ExitCode.OK
