"""``pieceworks replicate``: copy a volume (or one of its snapshots) to another backend.

The replication runs as a TaskFlow flow (`common_algorithms.operations.replicate`):
native (the source backend copies to its peer itself), stream (through
pieceworks, sparse-aware and hashed end to end) or via the store (the source
pushes, the target pulls); a strategy that fails is reverted and the next
one runs. A target volume that exists is replaced only with ``--overwrite``
(else exit 2, before anything runs), and then the report gives its old and
new size.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.options import replicate_request_options
from pieceworks.cli.output import human_bytes, mb_per_s

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms import Backend, ReplicateOutcome, ReplicateRequest

__all__ = ["add_arguments", "replicate_request", "report", "run_replicate"]

DESCRIPTION = """\
Copy --volume V of --from-backend A (or its --snapshot S) into --to-volume W
of --to-backend B. The plan (see `pieceworks plan replicate`) picks the first
eligible strategy: native (A copies to B itself), stream (through pieceworks,
hashed end to end) or via-store (A pushes into the store, B pulls: --store).
A strategy that fails is reverted (temporary snapshot deleted, partial copy
removed) and the next one runs. An in-use V is read from a temporary
snapshot, or directly only with --force."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT, ExitCode.INTERRUPTED)


def add_arguments(parser: CommandParser) -> None:
    """The options of ``replicate``: a replication request."""
    parser.describe(DESCRIPTION, CODES, runs_flow=True)
    replicate_request_options(parser)


def replicate_request(args: argparse.Namespace) -> ReplicateRequest:
    """The request the options describe."""
    from pieceworks.common_algorithms import ReplicateRequest  # noqa: PLC0415

    extra = {"chunk_size": args.chunk_size} if args.chunk_size is not None else {}
    return ReplicateRequest(
        volume_id=args.volume,
        target_volume_id=args.to_volume,
        snapshot_id=args.snapshot,
        in_use=args.in_use,
        force=args.force,
        overwrite=bool(getattr(args, "overwrite", False)),
        **extra,
    )


def backends(args: argparse.Namespace, ctx: Context) -> tuple[Backend, Backend]:
    """The source and target backends (``--from-backend``, ``--to-backend``)."""
    source, target = ctx.backend(args.from_backend), ctx.backend(args.to_backend)
    if source.name == target.name and (args.to_volume or args.volume) == args.volume:
        raise CliError(
            f"replicating volume '{args.volume}' onto itself on backend '{source.name}':"
            " give --to-volume or another --to-backend",
            ExitCode.USAGE,
        )
    return source, target


def report(outcome: ReplicateOutcome) -> str:
    """A replication outcome as a few lines of text."""
    what = f"snapshot '{outcome.snapshot_id}' of volume" if outcome.snapshot_id else "volume"
    lines = [
        f"replicated {what} '{outcome.volume_id}' (backend '{outcome.source_backend}') to"
        f" volume '{outcome.target_volume_id}' (backend '{outcome.target_backend}')"
        + (
            ""
            if outcome.replaced_size is None
            else f", replacing it (old size {human_bytes(outcome.replaced_size)},"
            f" new size {human_bytes(outcome.size)})"
        ),
        f"  strategy  {outcome.strategy}",
    ]
    lines += [f"  fell back {a.strategy} failed: {a.error}" for a in outcome.failed]
    lines += [
        f"  size      {human_bytes(outcome.size)}",
        f"  through   {human_bytes(outcome.bytes_through_manager)} through pieceworks",
        *(
            [f"  sent      {human_bytes(outcome.bytes_sent)} by the backend itself"]
            if outcome.bytes_sent is not None
            else []
        ),
        f"  checked   {outcome.verified}",
        f"  time      {outcome.seconds:.2f} s, {mb_per_s(outcome.size, outcome.seconds):.1f} MB/s",
    ]
    return "\n".join(lines)


def run_replicate(args: argparse.Namespace, ctx: Context) -> int:
    """Plan and run a replication, with progress."""
    from pieceworks.cli.interrupts import (  # noqa: PLC0415
        abandon_replication,
        interrupted_write,
        volume_exists,
    )
    from pieceworks.common_algorithms import replicate  # noqa: PLC0415
    from pieceworks.common_algorithms.gc.journal import LocalJournal  # noqa: PLC0415

    source, target = backends(args, ctx)
    request = replicate_request(args)
    ctx.require_volume(source, request.volume_id)
    store = ctx.store(create=True)  # via-store writes chunks and the run journal there
    journal = LocalJournal(ctx.config.home / "journal")
    existed = volume_exists(target, request.target_volume)
    with ctx.progress(f"replicate {request.volume_id}") as progress:
        try:
            outcome = replicate(
                source,
                target,
                request,
                store=store,
                options=ctx.engine_options(),
                progress=progress,
                journal=journal,
            )
        except KeyboardInterrupt:
            progress.close()
            leftover = abandon_replication(source, store, journal, request)
            what = f"snapshot '{request.snapshot_id}' of " if request.snapshot_id else ""
            message = interrupted_write(
                target,
                request.target_volume,
                existed,
                "replication",
                f"a copy of {what}volume '{request.volume_id}'",
                leftover,
            )
            raise CliError(message, ExitCode.INTERRUPTED) from None
    ctx.out.data(outcome.to_dict())
    ctx.out.result(report(outcome))
    return ExitCode.OK
