"""``pieceworks forget``: remove backups by a retention policy (restic's rules).

The policy (`common_algorithms.gc.retention`) decides per volume which backups
to keep and why (a volume is one of a backend: ``db`` of backend ``a`` and
``db`` of backend ``b`` are two volumes, as restic groups by host);
``forget`` removes the manifests of the others (their chunks stay until
garbage collection: ``--prune`` runs it right after, as ``pieceworks prune``
does). ``--dry-run`` only shows the decisions.

A store with a manifest that cannot be read is refused (exit 4, nothing
removed): that backup's volume and time are unknown, so the policy cannot
count it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from pieceworks.cli.commands._select import add_filter_options, label_filters
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.options import whole_number

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms.gc.collection import GCReport
    from pieceworks.common_algorithms.gc.retention import Group, KeepPolicy, RetentionPlan
    from pieceworks.protocols import IObjectStore

__all__ = ["add_arguments", "gc_dict", "run_forget"]

DESCRIPTION = """\
Decide, for each volume on its own, which backups a policy keeps, and remove
the others' manifests (restic's rules). Walking newest first, each --keep-X N
keeps the newest backup of each of the N most recent hours, days, ISO weeks,
months or years that have one (--keep-last N: the N newest backups); while a
rule has count left, the volume's oldest backup is kept too. N = -1 keeps all.
Calendar periods are in UTC. A volume's newest backup is always kept. A
volume is one of a backend: volumes of the same name on two backends are
decided apart.

--volume and --label restrict which backups are considered. Chunks are freed
only by garbage collection: --prune runs it after removing (as `pieceworks
prune`). --dry-run shows the decisions and removes nothing. A manifest that
cannot be read stops forget before anything is removed (exit 4).

example: pieceworks forget --keep-last 3 --keep-daily 7 --keep-weekly 4 --prune"""
CODES = (
    ExitCode.FAILED,
    ExitCode.NOT_FOUND,
    ExitCode.CORRUPT,
    ExitCode.DEFERRED,
    ExitCode.INTERRUPTED,
)

_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def _count(text: str) -> int:
    """``--keep-X N``: ASCII digits (``-1`` for all), spaces around allowed.

    Python's `int` also took ``1_0`` (10) and other scripts' digits (``٣``: 3).
    """
    value = whole_number(text)
    if value is None or value < -1:
        raise argparse.ArgumentTypeError(
            f"invalid count {text!r}: a whole number >= 0, or -1 for all"
        )
    return value


def add_arguments(parser: CommandParser) -> None:
    """The options of ``forget``."""
    parser.describe(DESCRIPTION, CODES)
    group = parser.add_argument_group("policy (per volume)")
    periods = {"hourly": "hours", "daily": "days", "weekly": "ISO weeks"}
    for rule in _RULES:
        what = (
            "the N newest backups"
            if rule == "last"
            else f"the newest backup of each of the N latest {periods.get(rule, rule[:-2] + 's')}"
        )
        group.add_argument(
            f"--keep-{rule}", type=_count, default=0, metavar="N", help=f"keep {what}; -1: all"
        )
    add_filter_options(parser, times=False)
    parser.add_argument(
        "--prune", action="store_true", help="then remove chunk objects no backup references"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="only show what would be kept and removed"
    )


def _policy(args: argparse.Namespace) -> KeepPolicy:
    from pieceworks.common_algorithms.gc.retention import KeepPolicy  # noqa: PLC0415

    policy = KeepPolicy(**{rule: getattr(args, f"keep_{rule}") for rule in _RULES})
    if policy.empty:
        raise CliError(
            "forget needs a policy: give at least one of --keep-last, --keep-hourly,"
            " --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly with N > 0 (or -1)",
            ExitCode.USAGE,
        )
    return policy


def gc_dict(store: str, report: GCReport) -> dict[str, Any]:
    """A garbage collection report as ``prune --json`` prints it (`GCReport.to_dict`)."""
    return report.to_dict(store)


def _group(group: Group) -> tuple[str, str]:
    """``(backend, volume)`` of a group `run_forget` made."""
    assert not isinstance(group, str)
    backend, volume = group
    return backend, volume


def _text(plan: RetentionPlan, dry_run: bool) -> str:
    from pieceworks.cli.output import iso_time  # noqa: PLC0415

    lines = [plan.policy.describe() + " of each volume"]
    for group, decisions in plan.groups().items():
        backend, volume = _group(group)
        kept = sum(d.keep for d in decisions)
        lines.append(
            f"volume {volume} (backend {backend}): keep {kept},"
            f" {'would remove' if dry_run else 'remove'} {len(decisions) - kept}"
        )
        for d in decisions:
            verdict = "keep  " if d.keep else "remove"
            reasons = f"  {', '.join(d.reasons)}" if d.reasons else ""
            lines.append(
                f"  {verdict}  {d.backup_id}  {iso_time(d.candidate.created)}{reasons}".rstrip()
            )
    return "\n".join(lines)


def _remove(
    objects: IObjectStore, plan: RetentionPlan, *, prune: bool
) -> tuple[list[str], GCReport | None]:
    """Remove the manifests `plan` removes, then collect if `prune`: (removed ids, report).

    A failure after some were removed is an error naming them (`collection_failed`).
    Ctrl-C, SIGTERM or SIGHUP while manifests are removed lets that finish (it is
    quick), then stops before the collection (`interrupted_after`); the collection
    itself stops at once.
    """
    from pieceworks.cli.commands.delete import (  # noqa: PLC0415
        collect,
        collection_failed,
        interrupted_after,
    )
    from pieceworks.cli.signals import signals_deferred  # noqa: PLC0415
    from pieceworks.common_algorithms.gc.collection import delete_backup  # noqa: PLC0415
    from pieceworks.protocols import BackupNotFound, PieceworksError  # noqa: PLC0415

    removed: list[str] = []
    try:
        with signals_deferred():  # removing a few manifests is quick: finish it
            for i, d in enumerate(plan.remove):
                try:
                    delete_backup(objects, d.backup_id, collect=False)
                except BackupNotFound:  # deleted meanwhile by someone else
                    continue
                except PieceworksError as exc:
                    if not removed:
                        raise
                    rest = ", ".join(r.backup_id for r in plan.remove[i:])
                    raise collection_failed(removed, exc, f"removing {rest}") from exc
                removed.append(d.backup_id)
    except KeyboardInterrupt:
        raise interrupted_after(removed, collecting=prune) from None
    # Outside: a collection may take long, and stopping it is safe (`collect`).
    return removed, collect(objects, deleted=removed) if prune else None


def run_forget(args: argparse.Namespace, ctx: Context) -> int:
    """Apply the policy to each volume's backups; remove (unless --dry-run) the rest."""
    from pieceworks.cli.commands._select import load_backups, select  # noqa: PLC0415
    from pieceworks.cli.output import human_bytes  # noqa: PLC0415
    from pieceworks.common_algorithms.gc.retention import Candidate, apply_policy  # noqa: PLC0415
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415

    policy = _policy(args)
    labels = label_filters(args)
    store = ctx.store()
    found = load_backups(ctx, store.objects)
    if found.damaged:
        raise CliError(
            f"{len(found.damaged)} manifest(s) cannot be read: {', '.join(found.damaged)};"
            " nothing was removed (the policy cannot count a backup it cannot read: see"
            " `pieceworks check`, then delete or repair the damaged backup)",
            ExitCode.CORRUPT,
            reference="unreadable-manifests",  # as list, stats, check and gc say it
        )
    chosen = select(found.manifests, volumes=args.volumes, labels=labels)
    # A volume id names a volume of its backend: group by both (restic groups by host too).
    plan = apply_policy(
        [Candidate(m.backup_id, m.created, (m.backend, m.volume_id)) for m in chosen], policy
    )
    removed: list[str] = []
    gc_report = None
    if not args.dry_run:
        removed, gc_report = _remove(store.objects, plan, prune=bool(args.prune))
    # kept, removed, would_remove: the deprecated names of the *_backup_ids lists
    ctx.out.data(
        with_deprecated(
            "forget",
            {
                "store": store.name,
                "dry_run": bool(args.dry_run),
                "policy": policy.to_dict(),
                "groups": [
                    {
                        "backend": _group(group)[0],
                        "volume_id": _group(group)[1],
                        "backups": [d.to_dict() for d in decisions],
                    }
                    for group, decisions in plan.groups().items()
                ],
                "kept_backup_ids": [d.backup_id for d in plan.keep],
                "removed_backup_ids": removed if not args.dry_run else [],
                "would_remove_backup_ids": (
                    [d.backup_id for d in plan.remove] if args.dry_run else []
                ),
                "prune": gc_dict(store.name, gc_report) if gc_report is not None else None,
            },
        )
    )
    if not plan.decisions:
        ctx.out.note(f"no backups to decide on in store '{store.name}'")
        return ExitCode.OK
    ctx.out.result(_text(plan, bool(args.dry_run)))
    if args.dry_run:
        ctx.out.result(
            f"dry run: would remove {len(plan.remove)} backup(s); nothing was changed"
            + ("" if not args.prune else " (and no garbage was collected)")
        )
        return ExitCode.OK
    summary = f"removed {len(removed)} backup(s)"
    if gc_report is None:
        if removed:
            summary += "; their chunks are freed by `pieceworks prune`"
    elif gc_report.deferred:
        summary += (
            f"; garbage collection deferred: runs in progress: {gc_report.describe_blockers()}"
            " (run `pieceworks prune` later)"
        )
        ctx.out.result(summary)
        ctx.out.explain(
            "gc-deferred",
            "chunk collection deferred by runs in progress",
            "run `pieceworks prune` again later",
        )
        return ExitCode.DEFERRED
    else:
        summary += (
            f"; pruned {gc_report.chunks_deleted} unreferenced chunk objects"
            f" ({human_bytes(gc_report.bytes_freed)})"
        )
    ctx.out.result(summary)
    return ExitCode.OK
