"""``pieceworks restore BACKUP_ID``: write a backup into a volume of the backend.

Every chunk's hash is checked before it is written; a damaged chunk stops
the restore (exit 4) and the target volume is left as it was. Nothing is
replaced by surprise: without ``--volume`` the backup goes into a new
volume (``<volume>-from-<backup id>``) whose name is printed; a volume that
exists is replaced only with ``--overwrite`` (else exit 2), and then the
report says its old and new size.
"""

from __future__ import annotations

import argparse

from pieceworks.cli.context import Context
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.output import human_bytes, mb_per_s
from pieceworks.common_algorithms import RestoreOutcome, RestoreRequest, restore
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.common_algorithms.operations.targets import new_volume_id

__all__ = ["report", "run_restore"]


def report(outcome: RestoreOutcome, *, created: bool = False) -> str:
    """A restore outcome as a few lines of text."""
    if outcome.replaced_size is not None:
        into = (
            f"into volume '{outcome.volume_id}', replacing it (old size"
            f" {human_bytes(outcome.replaced_size)}, new size {human_bytes(outcome.size)})"
        )
    else:
        into = f"into {'new ' if created else ''}volume '{outcome.volume_id}'"
    lines = [
        f"restored backup {outcome.backup_id} {into} (backend '{outcome.backend}')",
        f"  strategy  {outcome.strategy}",
    ]
    lines += [f"  fell back {a.strategy} failed: {a.error}" for a in outcome.failed]
    lines += [
        f"  size      {human_bytes(outcome.size)}",
        f"  written   {human_bytes(outcome.bytes_written)} (holes are not written)",
        f"  time      {outcome.seconds:.2f} s, {mb_per_s(outcome.size, outcome.seconds):.1f} MB/s",
    ]
    return "\n".join(lines)


def run_restore(args: argparse.Namespace, ctx: Context) -> int:
    """Restore BACKUP_ID into --volume, or into a new volume named after the backup."""
    from pieceworks.cli.interrupts import interrupted_write, volume_exists  # noqa: PLC0415

    backend, store = ctx.backend(), ctx.store()
    manifest = read_manifest(store.objects, args.backup_id)
    volume = args.volume
    if volume is None:
        volume = new_volume_id(backend, f"{manifest.volume_id}-from-{manifest.backup_id}")
        ctx.out.note(f"restoring into new volume '{volume}'")
    request = RestoreRequest(args.backup_id, volume, overwrite=args.overwrite)
    existed = False if args.volume is None else volume_exists(backend, volume)
    with ctx.progress(f"restore {request.volume_id}") as progress:
        try:
            outcome = restore(
                backend, store, request, options=ctx.engine_options(), progress=progress
            )
        except KeyboardInterrupt:
            progress.close()
            message = interrupted_write(
                backend, volume, existed, "restore", f"backup {request.backup_id}"
            )
            raise CliError(message, ExitCode.INTERRUPTED) from None
    ctx.out.data(outcome.to_dict())
    ctx.out.result(report(outcome, created=args.volume is None))
    return ExitCode.OK
