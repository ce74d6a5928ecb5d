"""``pieceworks backup``: back up one volume of a backend into a store.

The backup runs as a TaskFlow flow (`common_algorithms.operations.backup`): the first
eligible strategy of the plan runs and, if it fails, is reverted and the
next one runs. Progress comes from the transfer task's notifier.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from pieceworks.cli.commands._select import label, label_filters
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.options import backup_request_options, decimal_number, whole_number
from pieceworks.cli.output import human_bytes, mb_per_s

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms import BackupOutcome, BackupRequest

__all__ = [
    "add_arguments",
    "backup_request",
    "guard_max_chunks",
    "guard_percent",
    "label_and_guard_options",
    "report",
    "run_backup",
]

log = logging.getLogger(__name__)

DESCRIPTION = """\
Back up --volume of the backend into the store. The plan (see `pieceworks plan
backup`) picks the first eligible strategy: offload, snapshot-stream or
direct-stream; a strategy that fails is reverted and the next one runs.
Ctrl-C stops the backup: no manifest is written, the temporary snapshot and
the store lease are removed, and the message says what chunks remain."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT, ExitCode.INTERRUPTED)


def add_arguments(parser: CommandParser) -> None:
    """The options of ``backup``: a backup request and labels."""
    parser.describe(DESCRIPTION, CODES, runs_flow=True)
    backup_request_options(parser)
    label_and_guard_options(parser)


def label_and_guard_options(parser: argparse.ArgumentParser) -> None:
    """``--label``, ``--guard-sample`` and ``--guard-max-chunks``: ``backup``, ``jobs post backup``.

    (``plan backup`` has none of them: a plan neither records nor samples.)
    """
    parser.add_argument(
        "--label",
        dest="labels",
        metavar="K=V",
        type=label,
        action="append",
        help="record this label in the backup (repeatable); shown by list and show",
    )
    parser.add_argument(
        "--guard-sample",
        dest="guard_sample",
        metavar="PCT",
        type=guard_percent,
        default=None,
        help=(
            "re-read this percent (at least one chunk) of the chunks changed-blocks reports"
            " unchanged and allocated-extents reports as holes, to catch a lying driver;"
            " 0 turns the guard off (default: [backup] guard_sample, else 1)"
        ),
    )
    parser.add_argument(
        "--guard-max-chunks",
        dest="guard_max_chunks",
        metavar="N",
        type=guard_max_chunks,
        default=None,
        help=(
            "sample at most N chunks of each kind per backup, whatever the volume's size"
            " (default: [backup] guard_max_chunks, else 128)"
        ),
    )


def guard_percent(text: str) -> float:
    """``PCT`` or ``PCT%`` as a float in [0, 100]; `argparse.ArgumentTypeError` otherwise."""
    value = decimal_number(text.strip().removesuffix("%"))
    if value is None or not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(
            f"invalid percentage {text!r}: give a number from 0 (guard off) to 100"
        )
    return value


def guard_max_chunks(text: str) -> int:
    """``N``, a whole number of at least 1; `argparse.ArgumentTypeError` otherwise."""
    value = whole_number(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(
            f"invalid number of chunks {text!r}: give a whole number of at least 1"
        )
    return value


def backup_request(
    args: argparse.Namespace, guard: float | None = None, max_chunks: int | None = None
) -> BackupRequest:
    """The request the options describe (`ConfigError` if out of range).

    `guard` and `max_chunks`: the guard's sample percent and cap when
    ``--guard-sample`` and ``--guard-max-chunks`` are not given (``[backup]
    guard_sample`` and ``guard_max_chunks``; None: the built-in defaults).
    """
    from pieceworks.common_algorithms import BackupRequest  # noqa: PLC0415

    given = getattr(args, "guard_sample", None)  # plan backup has no --guard-sample
    guard = given if given is not None else guard
    given_cap = getattr(args, "guard_max_chunks", None)
    max_chunks = given_cap if given_cap is not None else max_chunks
    extra: dict[str, Any] = {"chunk_size": args.chunk_size} if args.chunk_size is not None else {}
    labels = label_filters(args)  # backup --label K=V (plan backup has none)
    if guard is not None:
        extra["guard_percent"] = guard
    if max_chunks is not None:
        extra["guard_max_chunks"] = max_chunks
    return BackupRequest(
        volume_id=args.volume,
        in_use=args.in_use,
        force=args.force,
        incremental=args.incremental,
        codec=args.codec,
        labels=labels,
        **extra,
    )


def report(outcome: BackupOutcome) -> str:
    """A backup outcome as a few lines of text."""
    lines = [
        f"backup {outcome.backup_id} of volume '{outcome.volume_id}' (backend"
        f" '{outcome.backend}') written to store '{outcome.store}'",
        f"  strategy  {outcome.strategy}",
    ]
    lines += [f"  fell back {a.strategy} failed: {a.error}" for a in outcome.failed]
    lines += [
        f"  size      {human_bytes(outcome.size)} ({outcome.chunks_total} chunks of data,"
        f" {outcome.holes} holes)",
        f"  read      {human_bytes(outcome.bytes_read)}"
        + (
            f" ({human_bytes(outcome.bytes_through_manager)} through pieceworks)"
            if outcome.bytes_through_manager != outcome.bytes_read
            else ""
        ),
        f"  stored    {human_bytes(outcome.bytes_stored)} new ({outcome.chunks_new} new chunks)",
    ]
    if outcome.incremental:
        lines.append(f"  parent    {outcome.parent or 'none (first backup of the volume)'}")
    used = ", ".join(
        f"{name} (skipped {human_bytes(n)})" for name, n in outcome.enhancers_used.items()
    )
    lines.append(f"  enhancers {used or 'none'}")
    if outcome.guard is not None and outcome.guard.percent > 0:
        g = outcome.guard
        cap = f", capped at {g.max_chunks} per enhancer from {g.chunks_wanted}" if g.capped else ""
        lines.append(
            f"  guard     re-read {human_bytes(g.bytes_reread)} ({g.chunks_checked} sampled"
            f" chunks, {g.percent:g}%{cap}): "
            + ("LIES FOUND, read in full" if g.lies else "no lie found")
        )
    lines.append(
        f"  time      {outcome.seconds:.2f} s, {mb_per_s(outcome.size, outcome.seconds):.1f} MB/s"
    )
    return "\n".join(lines)


def run_backup(args: argparse.Namespace, ctx: Context) -> int:
    """Plan and run a backup, with progress; undo and explain on Ctrl-C."""
    from pieceworks.cli.interrupts import abandon_backup  # noqa: PLC0415
    from pieceworks.common_algorithms import backup, plan_backup  # noqa: PLC0415

    backend, store = ctx.backend(), ctx.store(create=True)  # a backup makes a new store
    request = backup_request(args, ctx.config.guard_sample, ctx.config.guard_max_chunks)
    ctx.require_volume(backend, request.volume_id)
    plan = plan_backup(backend, store, request)
    log.info("%s", plan.format_text())
    options = ctx.engine_options()
    with ctx.progress(f"backup {request.volume_id}") as progress:
        try:
            outcome = backup(backend, store, request, options=options, progress=progress)
        except KeyboardInterrupt:
            progress.close()
            message = abandon_backup(backend, store, request, plan)
            raise CliError(message, ExitCode.INTERRUPTED) from None
    if ctx.out.quiet:  # else the guard's log warning has said it already
        for warning in outcome.warnings:
            ctx.out.warn(warning)
    ctx.out.data(outcome.to_dict())
    ctx.out.result(report(outcome))
    return ExitCode.OK
