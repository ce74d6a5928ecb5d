"""``pieceworks verify BACKUP_ID``: check every chunk of a backup against its hash."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.ids import id_type
from pieceworks.cli.output import human_bytes
from pieceworks.protocols.chunks import chunk_key

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms import VerifyOutcome

__all__ = ["add_arguments", "report", "run_verify"]

DESCRIPTION = """\
Fetch every chunk of BACKUP_ID from the store and check its sha256; report
every missing or damaged chunk with its volume offset (exit 1 if any).
A chunk object whose content does not match its hash is moved aside to
quarantine/ in the store, so that the next backup of that data stores it
again. A damaged manifest is corruption (exit 4).
--against-source instead reads the backup's volume (through a temporary
snapshot when the backend has one) and compares it chunk by chunk with the
backup, naming every differing offset (exit 4 on a difference): it catches a
driver whose extents or changed blocks left data out. Meaningful while the
volume has not changed since the backup."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT, ExitCode.INTERRUPTED)


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``verify``."""
    parser.describe(DESCRIPTION, CODES, runs_flow=True)
    parser.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    parser.add_argument(
        "--against-source",
        action="store_true",
        help="compare with the volume on its backend (--backend, else the backup's)",
    )
    parser.add_argument(
        "--no-quarantine",
        action="store_true",
        help="only report damaged chunks; leave them where they are (read-only check)",
    )


def report(outcome: VerifyOutcome) -> str:
    """A verify outcome as text: OK, or every problem with its volume offset."""
    head = (
        f"backup {outcome.backup_id}: {outcome.chunks_checked} chunks"
        f" ({human_bytes(outcome.bytes_checked)}) checked"
    )
    if outcome.ok:
        return f"{head}: OK"
    lines = [f"{head}: {len(outcome.problems)} problem(s)"]
    lines += [
        f"  backup {outcome.backup_id} offset {p.offset}: chunk {chunk_key(p.digest)} {p.reason}"
        + (f" ({p.detail})" if p.detail else "")
        for p in outcome.problems
    ]
    if outcome.quarantined:
        lines.append(
            f"  {len(outcome.quarantined)} damaged chunk object(s) moved aside to quarantine/;"
            " the next backup of the data stores them again"
        )
    return "\n".join(lines)


def run_verify(args: argparse.Namespace, ctx: Context) -> int:
    """Verify BACKUP_ID; exit 1 when a chunk is missing or damaged.

    Damaged chunk objects are moved aside to ``quarantine/`` unless
    ``--no-quarantine`` is given.
    """
    from pieceworks.common_algorithms import verify  # noqa: PLC0415

    store = ctx.store()
    if args.against_source:
        return _against_source(args, ctx)
    with ctx.progress(f"verify {args.backup_id}") as progress:
        try:
            outcome = verify(
                store,
                args.backup_id,
                options=ctx.engine_options(),
                progress=progress,
                quarantine=not args.no_quarantine,
            )
        except KeyboardInterrupt:
            progress.close()
            raise CliError(
                "interrupted: verify did not finish; nothing was changed", ExitCode.INTERRUPTED
            ) from None
    ctx.out.data(outcome.to_dict())
    ctx.out.result(report(outcome))
    if outcome.ok:
        return ExitCode.OK
    ctx.out.explain(
        "verify-problems",
        f"backup {outcome.backup_id}: {len(outcome.problems)} missing or damaged chunk(s)",
        "the summary names each chunk and its offset; a new backup of the volume stores"
        " quarantined chunks again",
    )
    return ExitCode.FAILED


def _against_source(args: argparse.Namespace, ctx: Context) -> int:
    """``verify --against-source``: compare with the volume; exit 4 on a difference."""
    # Imported here, like every command's algorithms.
    from pieceworks.common_algorithms.format.manifest import read_manifest  # noqa: PLC0415
    from pieceworks.common_algorithms.operations.against_source import compare_with_source  # noqa: PLC0415

    store = ctx.store()
    manifest = read_manifest(store.objects, args.backup_id)
    backend = ctx.backend(args.backend or manifest.backend)
    ctx.require_volume(backend, manifest.volume_id)  # was "no volume 'v'", naming no backend
    found = compare_with_source(backend, store, args.backup_id)
    ctx.out.data(found.to_dict())
    head = (
        f"backup {found.backup_id} against volume {found.volume_id} of backend"
        f" {found.backend}{' (from a temporary snapshot)' if found.snapshot else ''}:"
        f" {found.chunks_compared} chunks ({human_bytes(found.bytes_compared)}) compared"
    )
    if found.ok:
        ctx.out.result(f"{head}: identical")
        return ExitCode.OK
    lines = [f"{head}: {len(found.differences)} difference(s)"]
    lines += [f"  offset {d.offset} ({d.length} bytes): {d.reason}" for d in found.differences]
    ctx.out.result("\n".join(lines))
    ctx.out.explain(
        "source-differs",
        f"backup {found.backup_id} differs from volume {found.volume_id} in"
        f" {len(found.differences)} place(s)",
        "meaningful only while the volume has not changed since the backup",
    )
    return ExitCode.CORRUPT
