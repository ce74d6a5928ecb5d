"""``pieceworks delete BACKUP_ID`` and ``pieceworks gc``.

Delete removes the manifest first (the backup stops existing at once), then
collects the chunks no other backup references. Collection never races a
backup in progress: while one holds a lease it is deferred, the report
says which backups deferred it (owner, alive or not, age) and the command
exits 75 (`ExitCode.DEFERRED`), so that a cron job notices.
"""

from __future__ import annotations

import argparse

from pieceworks.cli.context import Context
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.interrupts import sigint_ignored
from pieceworks.cli.output import human_bytes
from pieceworks.common_algorithms import delete
from pieceworks.common_algorithms.gc.collection import collect_garbage

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
            f"; chunk collection deferred by backups in progress: {outcome.blockers}"
            " (run `pieceworks gc` later)"
        )
        ctx.out.result(line)
        return ExitCode.DEFERRED
    ctx.out.result(line)
    return ExitCode.OK


def run_gc(args: argparse.Namespace, ctx: Context) -> int:
    """Remove chunk objects no backup references (unless a backup is running)."""
    store = ctx.store()
    with sigint_ignored():
        report = collect_garbage(store.objects, dry_run=args.dry_run)
    ctx.out.data(report.to_dict(store.name))
    if report.deferred:
        ctx.out.result(
            f"garbage collection deferred: backups in progress: {report.describe_blockers()}."
            " Nothing was removed; run `pieceworks gc` again later"
        )
        return ExitCode.DEFERRED
    verb = "would remove" if report.dry_run else "removed"
    ctx.out.result(
        f"{verb} {report.chunks_deleted} unreferenced chunk objects"
        f" ({human_bytes(report.bytes_freed)}); {report.manifests} backups reference"
        f" {report.chunks_referenced} chunks"
    )
    return ExitCode.OK
