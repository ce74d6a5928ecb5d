"""``pieceworks delete BACKUP_ID`` and ``pieceworks gc``.

Delete removes the manifest first (the backup stops existing at once), then
collects the chunks no other backup references. Collection never races a
backup in progress: while one holds a lease it is deferred, and the report
says which backups deferred it.
"""

from __future__ import annotations

import argparse

from pieceworks.cli.context import Context
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.interrupts import sigint_ignored
from pieceworks.cli.output import human_bytes
from pieceworks.common_algorithms import delete
from pieceworks.common_algorithms.gc import collect_garbage

__all__ = ["run_delete", "run_gc"]


def run_delete(args: argparse.Namespace, ctx: Context) -> int:
    """Delete BACKUP_ID and collect the chunks only it referenced."""
    store = ctx.store()
    try:
        outcome = delete(store, args.backup_id, options=ctx.engine_options())
    except KeyboardInterrupt:
        raise CliError(
            f"interrupted: backup {args.backup_id} may or may not be deleted (see `pieceworks"
            " list`); unreferenced chunks are removed by the next delete or gc",
            ExitCode.INTERRUPTED,
        ) from None
    ctx.out.data(outcome.to_dict())
    line = (
        f"deleted backup {outcome.backup_id}: {outcome.chunks_deleted} chunk objects removed,"
        f" {human_bytes(outcome.bytes_freed)} freed"
    )
    if outcome.deferred_by:
        line += (
            "; chunk collection deferred by backups in progress:"
            f" {', '.join(outcome.deferred_by)} (run `pieceworks gc` later)"
        )
    ctx.out.result(line)
    return ExitCode.OK


def run_gc(args: argparse.Namespace, ctx: Context) -> int:
    """Remove chunk objects no backup references (unless a backup is running)."""
    store = ctx.store()
    with sigint_ignored():
        report = collect_garbage(store.objects, dry_run=args.dry_run)
    ctx.out.data(
        {
            "store": store.name,
            "dry_run": report.dry_run,
            "manifests": report.manifests,
            "chunks_referenced": report.chunks_referenced,
            "chunks_deleted": report.chunks_deleted,
            "bytes_freed": report.bytes_freed,
            "deferred_by": list(report.deferred_by),
            "stale_markers": list(report.stale_markers),
        }
    )
    if report.deferred:
        ctx.out.result(
            f"garbage collection deferred: backups in progress: {', '.join(report.deferred_by)}"
        )
    else:
        verb = "would remove" if report.dry_run else "removed"
        ctx.out.result(
            f"{verb} {report.chunks_deleted} unreferenced chunk objects"
            f" ({human_bytes(report.bytes_freed)}); {report.manifests} backups reference"
            f" {report.chunks_referenced} chunks"
        )
    return ExitCode.OK
