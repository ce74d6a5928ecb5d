"""``pieceworks recover``: remove what crashed runs left behind, and say what and why.

Looks at every configured store (or the one ``--store`` names) and every
configured backend: leases and locks of dead owners, run journals (in the
stores, and this host's ``$PIECEWORKS_HOME/journal`` of runs without a
store) and the temporary snapshots they name, temporary files of dead
writers. Each is
removed or kept, with the reason. ``--dry-run`` removes nothing. Follow it
with ``pieceworks gc`` to remove chunks no backup references.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser

__all__ = ["add_arguments", "run_recover"]

DESCRIPTION = """\
Remove what killed or crashed runs left behind, on every configured store and
backend: leases and locks of dead owners (same host: the process is gone;
another host: not renewed for 2 minutes), the temporary snapshots their run
journals name, and temporary files (.tmp-*, .incoming) of dead writers. What a
live run owns is kept. Every item is listed with the reason. Then run gc to
remove chunks no backup references."""


def add_arguments(parser: CommandParser) -> None:
    """The options of ``recover``."""
    parser.describe(DESCRIPTION, (ExitCode.FAILED, ExitCode.NOT_FOUND))
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def run_recover(args: argparse.Namespace, ctx: Context) -> int:
    """Recover every configured store and backend; exit 1 if a removal failed."""
    from pieceworks.cli.signals import signals_ignored  # noqa: PLC0415
    from pieceworks.common_algorithms.gc.recover import (  # noqa: PLC0415
        LocalJournal,
        RecoverItem,
        RecoverOutcome,
        recover,
    )
    from pieceworks.protocols import PieceworksError  # noqa: PLC0415

    # One store or backend that cannot be opened (an off-site store unreachable, a
    # passphrase not given: a CliError, not a PieceworksError) is a failed item: the
    # others are still recovered.
    unopened: list[RecoverItem] = []
    stores, backends = [], {}
    for name in [args.store] if args.store else sorted(ctx.config.stores):
        try:
            stores.append(ctx.store(name))
        except (PieceworksError, CliError) as exc:
            if args.store:
                raise
            unopened.append(RecoverItem("store", name, name, "failed", f"cannot open it: {exc}"))
    for name in sorted(ctx.config.backends):
        try:
            backends[name] = ctx.backend(name)
        except (PieceworksError, CliError) as exc:
            unopened.append(RecoverItem("backend", name, name, "failed", f"cannot open it: {exc}"))
    journal = LocalJournal(ctx.config.home / "journal")
    with signals_ignored():
        done = recover(stores, backends, dry_run=args.dry_run, journals=[journal])
    outcome = RecoverOutcome((*unopened, *done.items), done.dry_run)
    ctx.out.data(outcome.to_dict())
    lines = [f"{i.action:<12} {i.kind} {i.name} ({i.where}): {i.reason}" for i in outcome.items]
    verb = "would remove" if outcome.dry_run else "removed"
    lines.append(
        f"{verb} {outcome.removed}, kept {outcome.kept}, failed {outcome.failed}"
        + ("" if outcome.dry_run else "; run `pieceworks gc` to remove unreferenced chunks")
    )
    ctx.out.result("\n".join(lines))
    if not outcome.failed:
        return ExitCode.OK
    ctx.out.explain(
        "recover-failed",
        f"{outcome.failed} removal(s) or store(s)/backend(s) failed",
        "the items say why",
    )
    return ExitCode.FAILED
