"""``pieceworks copy --from-store A --to-store B [ID...]``: an off-site copy of backups.

As restic's ``copy``: the chosen backups (all of A's by default, or those of
``--volume``) are copied into B with the chunk objects they need, skipping
chunks B already has and backups it already holds, renaming and re-sealing
chunks when the two stores are encrypted differently (or one is plain), and
writing each manifest last. A copy interrupted at any point leaves no partial
backup in B; running it again completes it. A's passphrase comes from
``--from-password-file`` or ``$PIECEWORKS_FROM_PASSWORD[_FILE]``, B's from the
usual ``--password-file`` or ``$PIECEWORKS_PASSWORD[_FILE]``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.ids import id_type

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser

__all__ = ["add_arguments", "run_copy"]


def add_arguments(copy: CommandParser) -> None:
    """The arguments of ``copy``: backups, source and target stores."""
    copy.describe(
        (
            "Copy backups (all of --from-store's, those of --volume, or the ids given)\n"
            "into --to-store with the chunks they need; chunks and backups the target\n"
            "already holds are skipped, chunks are checked against their ids on the way\n"
            "and re-encrypted when the stores' keys differ. Each manifest is written\n"
            "last: an interrupted copy leaves no partial backup, and running it again\n"
            "completes it."
        ),
        (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT, ExitCode.INTERRUPTED),
    )
    copy.add_argument(
        "backup_ids",
        metavar="BACKUP_ID",
        nargs="*",
        type=id_type("backup id"),
        help="backups to copy",
    )
    copy.add_argument(
        "--from-store",
        metavar="A",
        type=id_type("store name"),
        required=True,
        help="the store to copy from",
    )
    copy.add_argument(
        "--to-store",
        metavar="B",
        type=id_type("store name"),
        required=True,
        help="the store to copy into",
    )
    copy.add_argument(
        "--volume", metavar="V", type=id_type("volume id"), help="only the backups of this volume"
    )
    copy.add_argument(
        "--from-password-file",
        metavar="FILE",
        help="passphrase of --from-store if encrypted (else $PIECEWORKS_FROM_PASSWORD)",
    )


def run_copy(args: argparse.Namespace, ctx: Context) -> int:
    """Copy, with progress; print what was copied and skipped."""
    from pieceworks.cli.output import human_bytes  # noqa: PLC0415
    from pieceworks.common_algorithms import ProgressEvent  # noqa: PLC0415
    from pieceworks.common_algorithms.operations.copy import copy_backups  # noqa: PLC0415
    from pieceworks.protocols import validate_id  # noqa: PLC0415

    for backup_id in args.backup_ids:
        validate_id("backup id", backup_id)
    if args.backup_ids and args.volume:
        # Each filtered the other: an id of another volume was skipped without a word
        # ("copied 0 backup(s)", exit 0). restic ignores its filters beside ids, with a
        # warning; one of the two is a slip, and which is not ours to guess.
        raise CliError(
            "BACKUP_ID and --volume exclude each other: give the backups to copy, or --volume"
            " for every backup of a volume",
            ExitCode.USAGE,
        )
    if args.from_store == args.to_store:  # a mistyped command line, not the configuration
        raise CliError(f"--from-store and --to-store are both '{args.from_store}'", ExitCode.USAGE)
    source = ctx.store(args.from_store, source=True, password_file=args.from_password_file)
    target = ctx.store(args.to_store, create=True)  # copying into a new store makes it
    with ctx.progress(f"copy {source.name} -> {target.name}") as progress:
        try:
            outcome = copy_backups(
                source,
                target,
                args.backup_ids,
                volume_id=args.volume,
                progress=lambda done, total: progress(
                    ProgressEvent("copy", done / total if total else 1.0, done, total)
                ),
            )
        except KeyboardInterrupt:  # each manifest is written last: no backup is partial
            progress.close()
            raise CliError(
                f"interrupted: every backup whose manifest is in store '{target.name}' is"
                " complete there, and no other is listed; run the same copy again to copy the"
                " rest (chunks already sent are not sent again)",
                ExitCode.INTERRUPTED,
            ) from None
    ctx.out.data(outcome.to_dict())
    lines = [
        f"copied {len(outcome.backups_copied)} backup(s) from store '{source.name}' to"
        f" '{target.name}' ({len(outcome.backups_skipped)} already there):"
        f" {outcome.chunks_copied} chunk(s), {human_bytes(outcome.bytes_copied)} sent,"
        f" {outcome.chunks_skipped} chunk(s) already there"
    ]
    lines += [f"  {backup_id}" for backup_id in outcome.backups_copied]
    ctx.out.result("\n".join(lines))
    if args.volume and not (outcome.backups_copied or outcome.backups_skipped):
        ctx.out.note(f"no backup of volume '{args.volume}' in store '{source.name}'")
    return ExitCode.OK
