"""``pieceworks stats``: how much the store holds and how well it deduplicates and compresses.

Read from the manifests alone (`common_algorithms.inspect.stats`): no chunk
object is read, so it is quick on any store.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.ids import id_type

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms.inspect import VolumeStats

__all__ = ["add_arguments", "run_stats"]

DESCRIPTION = """\
Figures of the store's backups, per volume and for the store, from the
manifests alone: backups; logical bytes (the volume sizes, holes included);
data bytes (without holes); unique bytes (each distinct chunk once); stored
bytes (those chunks as stored, compressed); deduplication ratio (data /
unique), compression ratio (unique / stored) and total ratio (logical /
stored). A chunk two volumes share counts in each volume and once in the
store. A volume is one of a backend: one name on two backends is two rows.
A damaged manifest is left out, reported, and makes the exit code 4."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT)


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``stats``."""
    parser.describe(DESCRIPTION, CODES)
    parser.add_argument(
        "--volume",
        dest="volumes",
        metavar="ID",
        type=id_type("volume id"),
        action="append",
        help="only backups of this volume (repeatable); the total covers them only",
    )


def _row(name: str, backend: str, s: VolumeStats) -> list[object]:
    from pieceworks.cli.output import human_bytes  # noqa: PLC0415

    return [
        name,
        backend,
        s.backups,
        human_bytes(s.bytes_logical),
        human_bytes(s.bytes_unique),
        human_bytes(s.bytes_stored),
        f"{s.dedup_ratio:.2f}x",
        f"{s.compression_ratio:.2f}x",
        f"{s.total_ratio:.2f}x",
    ]


def run_stats(args: argparse.Namespace, ctx: Context) -> int:
    """Print the figures per volume and for the store; exit 4 if a manifest is damaged."""
    from pieceworks.cli.commands._select import load_backups, select  # noqa: PLC0415
    from pieceworks.cli.output import table  # noqa: PLC0415
    from pieceworks.common_algorithms.inspect import store_stats  # noqa: PLC0415
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415

    store = ctx.store()
    found = load_backups(ctx, store.objects)
    figures = store_stats(select(found.manifests, volumes=args.volumes))
    ctx.out.data(
        with_deprecated(
            "stats",
            {
                "store": store.name,
                **figures.to_dict(),
                "unreadable_backup_ids": sorted(found.damaged),
            },
        )
    )
    if figures.total.backups:
        rows = [_row(v, b, s) for (b, v), s in figures.volumes.items()]
        rows.append(_row("(store)" if not args.volumes else "(total)", "", figures.total))
        ctx.out.result(
            table(
                [
                    "volume",
                    "backend",
                    "backups",
                    "logical",
                    "unique",
                    "stored",
                    "dedup",
                    "compr",
                    "total",
                ],
                rows,
                right=(2, 3, 4, 5, 6, 7, 8),
            )
        )
    else:
        ctx.out.note(f"no backups in store '{store.name}'" + (" match" if args.volumes else ""))
    if found.damaged:
        raise CliError(
            f"{len(found.damaged)} manifest(s) cannot be read and are not counted:"
            f" {', '.join(sorted(found.damaged))}",
            ExitCode.CORRUPT,
            reference="unreadable-manifests",
        )
    return ExitCode.OK
