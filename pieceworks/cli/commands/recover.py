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

from pieceworks.cli.context import Context
from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.interrupts import sigint_ignored
from pieceworks.common_algorithms.recover import LocalJournal, recover

__all__ = ["run_recover"]


def run_recover(args: argparse.Namespace, ctx: Context) -> int:
    """Recover every configured store and backend; exit 1 if a removal failed."""
    names = [args.store] if args.store else sorted(ctx.config.stores)
    stores = [ctx.store(name) for name in names]
    backends = {b.name: b for b in ctx.all_backends()}
    journal = LocalJournal(ctx.config.home / "journal")
    with sigint_ignored():
        outcome = recover(stores, backends, dry_run=args.dry_run, journals=[journal])
    ctx.out.data(outcome.to_dict())
    lines = [f"{i.action:<12} {i.kind} {i.name} ({i.where}): {i.reason}" for i in outcome.items]
    verb = "would remove" if outcome.dry_run else "removed"
    lines.append(
        f"{verb} {outcome.removed}, kept {outcome.kept}, failed {outcome.failed}"
        + ("" if outcome.dry_run else "; run `pieceworks gc` to remove unreferenced chunks")
    )
    ctx.out.result("\n".join(lines))
    return ExitCode.FAILED if outcome.failed else ExitCode.OK
