"""``pieceworks delete BACKUP_ID`` and ``pieceworks gc``.

Delete removes the manifest first (the backup stops existing at once), then
collects the chunks no other backup references. Collection never races a
backup in progress nor a reader (restore, verify, copy, check): while one
holds a lease it is deferred, the report says which leases deferred it
(what holds each, owner, alive or not, age) and the command
exits 75 (`ExitCode.DEFERRED`), so that a cron job notices.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode, code_for
from pieceworks.cli.output import human_bytes
from pieceworks.protocols import PieceworksError

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms.backend import Store
    from pieceworks.common_algorithms.gc.collection import GCReport
    from pieceworks.protocols import IObjectStore

__all__ = ["add_gc_arguments", "collect", "collection_failed", "run_delete", "run_gc"]


def _done(deleted: Sequence[str]) -> str:
    """``backup X was deleted`` (or ``backups X, Y were``, or ``no backup was removed``)."""
    if not deleted:
        return "no backup was removed"
    if len(deleted) == 1:
        return f"backup {deleted[0]} was deleted"
    return f"backups {', '.join(deleted)} were deleted"


def interrupted_after(deleted: Sequence[str], *, collecting: bool) -> CliError:
    """The error (exit 130) of a command stopped once it had removed the manifests of `deleted`.

    `collecting`: the command would have collected the chunks next, and did not.
    """
    rest = (
        "; no garbage collection ran: `pieceworks prune` removes their chunks"
        if collecting and deleted
        else ""
    )
    return CliError(f"interrupted: {_done(deleted)}{rest}", ExitCode.INTERRUPTED)


def collection_failed(
    deleted: Sequence[str],
    exc: PieceworksError,
    step: str = "collecting the chunks no backup references",
) -> CliError:
    """The error of `step` failing after the backups `deleted` were removed.

    The failure's own message alone (``cannot delete chunks/..: Permission
    denied``) hid that the backups are gone: run again, the command said
    "no backup". Exit code and reference stay the failure's.
    """
    return CliError(
        f"{_done(deleted)}, but {step} failed: {exc}",
        code_for(exc),
        reference=type(exc).reference,
        hint="`pieceworks prune` removes the chunks left behind once the cause is fixed",
    )


def collect(
    objects: IObjectStore,
    *,
    deleted: Sequence[str] | None = None,
    dry_run: bool = False,
    grace: float | None = None,
) -> GCReport:
    """`collect_garbage` for a command, stoppable by Ctrl-C, SIGTERM or SIGHUP (exit 130).

    Collection was run with those signals ignored: on a large store (one
    request per chunk on Swift or S3) ``prune`` could then be stopped by
    SIGKILL only. Stopping between two deletions is safe: a removed chunk
    was referenced by no backup, the others stay for the next collection,
    and the collector's lock is released. `deleted`: the backups the
    command removed before (named if the collection fails or is stopped).
    `grace`: keep chunks younger than this many seconds (None: the store's default).
    """
    from pieceworks.common_algorithms.gc.collection import collect_garbage  # noqa: PLC0415

    try:
        return collect_garbage(objects, dry_run=dry_run, grace=grace)
    except KeyboardInterrupt:
        done = "" if deleted is None else f"{_done(deleted)}; "
        raise CliError(
            f"interrupted: {done}garbage collection stopped: unreferenced chunks it removed are"
            " gone, the others stay until the next `pieceworks prune`",
            ExitCode.INTERRUPTED,
        ) from None
    except PieceworksError as exc:
        if deleted is None:
            raise
        raise collection_failed(deleted, exc) from exc


def _manifest_gone(store: Store, backup_id: str) -> bool:
    """Whether `backup_id`'s manifest is known to be gone (False if that cannot be told)."""
    from pieceworks.common_algorithms.format.manifest import manifest_key  # noqa: PLC0415
    from pieceworks.protocols import ObjectNotFound  # noqa: PLC0415

    try:
        store.objects.head(manifest_key(backup_id))
    except ObjectNotFound:
        return True
    except PieceworksError:
        return False
    return False


def _manifest_present(store: Store, backup_id: str) -> bool:
    """Whether `backup_id`'s manifest is known to be there (False if that cannot be told)."""
    from pieceworks.common_algorithms.format.manifest import manifest_key  # noqa: PLC0415

    try:
        store.objects.head(manifest_key(backup_id))
    except PieceworksError:
        return False
    return True


GC_DESCRIPTION = """\
Remove every chunk object that no backup references (left by forget, delete,
or an interrupted or failed backup). Deferred while a backup, restore,
verify, copy or check is in progress: nothing is removed, the runs in the
way are named and the exit code is 75.
Leases and locks of dead runs are removed first. Ctrl-C or SIGTERM stops it
between two removals (exit 130; the rest waits for the next prune).
Chunk objects younger than the grace period are kept (a listing of a Swift
container may not yet show the lease or manifest of a backup that just
stored them): 1 hour by default, 0 on a local POSIX store; --grace sets it.
`pieceworks gc` is the same command."""


def add_gc_arguments(parser: CommandParser) -> None:
    """The options of ``prune`` (``gc``)."""
    parser.describe(
        GC_DESCRIPTION,
        (
            ExitCode.FAILED,
            ExitCode.NOT_FOUND,
            ExitCode.CORRUPT,
            ExitCode.DEFERRED,
            ExitCode.INTERRUPTED,
        ),
    )
    parser.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    parser.add_argument(
        "--grace",
        type=_grace_seconds,
        metavar="SECONDS",
        help="keep unreferenced chunks younger than this (default: 3600, 0 on a local"
        " POSIX store; 0 removes them all)",
    )


def _grace_seconds(text: str) -> float:
    """``--grace``: 0 or more seconds (finite); anything else is a usage error."""
    from pieceworks.cli.options import decimal_number  # noqa: PLC0415

    value = decimal_number(text)
    if value is None or not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid grace {text!r}: a number of seconds, 0 or more")
    return value


def run_delete(args: argparse.Namespace, ctx: Context) -> int:
    """Delete BACKUP_ID and collect the chunks only it referenced."""
    from pieceworks.common_algorithms import delete  # noqa: PLC0415

    store = ctx.store()
    try:
        outcome = delete(store, args.backup_id, options=ctx.engine_options())
    except KeyboardInterrupt:
        # Said for sure when the store tells: "may or may not be deleted" sent the user to
        # `list` for what one request answers.
        if _manifest_gone(store, args.backup_id):
            said = (
                f"backup {args.backup_id} was deleted; garbage collection stopped: unreferenced"
                " chunks it removed are gone, the others stay until the next `pieceworks prune`"
            )
        elif _manifest_present(store, args.backup_id):
            said = f"backup {args.backup_id} was not deleted; nothing was removed"
        else:
            said = (
                f"backup {args.backup_id} may or may not be deleted (see `pieceworks list`);"
                " unreferenced chunks are removed by the next delete or gc"
            )
        raise CliError(f"interrupted: {said}", ExitCode.INTERRUPTED) from None
    except PieceworksError as exc:  # after the manifest went: say the backup is deleted
        from pieceworks.protocols import BackupNotFound  # noqa: PLC0415

        if isinstance(exc, BackupNotFound) or not _manifest_gone(store, args.backup_id):
            raise
        raise collection_failed([args.backup_id], exc) from exc
    ctx.out.data(outcome.to_dict())
    line = (
        f"deleted backup {outcome.backup_id}: {outcome.chunks_deleted} chunk objects removed,"
        f" {human_bytes(outcome.bytes_freed)} freed"
    )
    if outcome.deferred:
        line += (
            f"; chunk collection deferred by runs in progress: {outcome.blockers}"
            " (run `pieceworks gc` later)"
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


def run_gc(args: argparse.Namespace, ctx: Context) -> int:
    """Remove chunk objects no backup references (unless a backup is running)."""
    store = ctx.store()
    report = collect(store.objects, dry_run=args.dry_run, grace=args.grace)
    ctx.out.data(report.to_dict(store.name))
    if report.deferred:
        ctx.out.result(
            f"garbage collection deferred: runs in progress: {report.describe_blockers()}."
            " Nothing was removed; run `pieceworks gc` again later"
        )
        ctx.out.explain(
            "gc-deferred",
            "chunk collection deferred by runs in progress",
            "run `pieceworks prune` again later",
        )
        return ExitCode.DEFERRED
    verb = "would remove" if report.dry_run else "removed"
    kept = (
        f"; kept {report.chunks_in_grace} younger than the grace of {report.grace_seconds:g} s"
        if report.chunks_in_grace
        else ""
    )
    ctx.out.result(
        f"{verb} {report.chunks_deleted} unreferenced chunk objects"
        f" ({human_bytes(report.bytes_freed)}); {report.manifests} backups reference"
        f" {report.chunks_referenced} chunks{kept}"
    )
    return ExitCode.OK
