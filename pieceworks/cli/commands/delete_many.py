"""``pieceworks delete ID [ID ...]``: one backup through the delete flow, several at once.

With one id this is `pieceworks.cli.commands.delete.run_delete` (the
TaskFlow delete flow). With several, every id is checked first (an unknown
one stops the command before anything is removed, exit 3), then their
manifests are removed and the garbage collected once, as ``forget`` does.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.ids import id_type

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser

__all__ = ["add_arguments", "run_delete_command"]

DESCRIPTION = """\
Delete each BACKUP_ID: its manifest is removed first, then every chunk object no
other backup references (deferred while a backup is in progress: the backups
are deleted, the collection is left to a later gc, and the exit code is 75).
With several ids, all are checked first: an unknown one deletes nothing (exit 3)."""
CODES = (
    ExitCode.FAILED,
    ExitCode.NOT_FOUND,
    ExitCode.CORRUPT,
    ExitCode.DEFERRED,
    ExitCode.INTERRUPTED,
)


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``delete``: one or more backup ids."""
    parser.describe(DESCRIPTION, CODES)
    parser.add_argument("backup_ids", metavar="BACKUP_ID", nargs="+", type=id_type("backup id"))


def run_delete_command(args: argparse.Namespace, ctx: Context) -> int:
    """Delete every BACKUP_ID given (see the module docstring)."""
    ids = list(dict.fromkeys(args.backup_ids))
    if len(ids) == 1:
        from pieceworks.cli.commands.delete import run_delete  # noqa: PLC0415

        args.backup_id = ids[0]
        return run_delete(args, ctx)
    return _delete_several(ids, ctx)


def _delete_several(ids: list[str], ctx: Context) -> int:
    from pieceworks.cli.commands.delete import (  # noqa: PLC0415
        collect,
        collection_failed,
        interrupted_after,
    )
    from pieceworks.cli.output import human_bytes  # noqa: PLC0415
    from pieceworks.cli.signals import signals_deferred  # noqa: PLC0415
    from pieceworks.common_algorithms.format.manifest import manifest_key  # noqa: PLC0415
    from pieceworks.common_algorithms.gc.collection import delete_backup  # noqa: PLC0415
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415
    from pieceworks.protocols import BackupNotFound, ObjectNotFound, PieceworksError  # noqa: PLC0415

    store = ctx.store()
    missing = []
    for backup_id in ids:
        try:
            store.objects.head(manifest_key(backup_id))
        except ObjectNotFound:
            missing.append(backup_id)
    if missing:
        # BackupNotFound (exit 3, its reference and hint): the command line adds what an id
        # given short is the start of (cli/near_ids.py).
        raise BackupNotFound(
            f"no backup {', '.join(missing)} in store '{store.name}'; nothing was deleted"
        )
    deleted: list[str] = []
    try:
        with signals_deferred():  # a few manifests: finish them, then stop if asked to
            for i, backup_id in enumerate(ids):
                try:
                    delete_backup(store.objects, backup_id, collect=False)
                except BackupNotFound:  # deleted meanwhile by someone else
                    continue
                except PieceworksError as exc:
                    if not deleted:
                        raise
                    rest = ", ".join(ids[i:])
                    raise collection_failed(deleted, exc, f"removing {rest}") from exc
                deleted.append(backup_id)
    except KeyboardInterrupt:
        raise interrupted_after(deleted, collecting=True) from None
    report = collect(store.objects, deleted=deleted)  # stoppable: it may take long
    ctx.out.data(
        with_deprecated(
            "delete",
            {
                "store": store.name,
                "backup_ids": deleted,
                "chunks_deleted": report.chunks_deleted,
                "bytes_freed": report.bytes_freed,
                "deferring_backup_ids": list(report.deferred_by),
                "blocking_leases": [m.to_dict() for m in report.blockers],
            },
        )
    )
    line = (
        f"deleted {len(deleted)} backups ({', '.join(deleted)}): {report.chunks_deleted} chunk"
        f" objects removed, {human_bytes(report.bytes_freed)} freed"
    )
    if report.deferred:
        line += (
            f"; chunk collection deferred by runs in progress: {report.describe_blockers()}"
            " (run `pieceworks prune` later)"
        )
        ctx.out.result(line)
        ctx.out.explain(
            "gc-deferred",
            "chunk collection deferred by runs in progress",
            "run `pieceworks prune` again later",
        )
        return ExitCode.DEFERRED
    ctx.out.result(line)
    return ExitCode.OK
