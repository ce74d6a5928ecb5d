"""``pieceworks recover``: remove what crashed runs left behind, and say what and why.

Looks at every configured store (or the one ``--store`` names) and every
configured backend: leases and locks of dead owners, run journals (in the
stores, and this host's ``$PIECEWORKS_HOME/journal`` of runs without a
store) and the temporary snapshots they name, temporary files of dead
writers. Each is
removed or kept, with the reason. ``--dry-run`` removes nothing. Follow it
with ``pieceworks gc`` to remove chunks no backup references.

With a jobboard (``[jobs]``, or ``--jobboard`` and ``--persistence``), the
leases and run journals of jobs still on the board are kept, with the
temporary snapshots they name: a conductor that died mid-job left them, and
the conductor that resumes the job goes on with them
(`pieceworks.execution.held`). A board that cannot be read fails the
command before anything is removed.

A configured store that does not exist has nothing to recover: it is not
created, only named in a warning (one named with ``--store``: exit 3,
`StoreMissing`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.commands.conductor import jobs_locations, reachable_jobs_locations
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.options import jobs_location_options
from pieceworks.protocols import ConfigError

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser

__all__ = ["add_arguments", "run_recover"]

DESCRIPTION = """\
Remove what killed or crashed runs left behind, on every configured store and
backend: leases and locks of dead owners (same host: the process is gone;
another host: not renewed for 2 minutes), the temporary snapshots their run
journals name, and temporary files (.tmp-*, .incoming) of dead writers. What a
live run owns is kept, and so is what a job still on the jobboard ([jobs], or
--jobboard and --persistence) holds: the conductor resuming it goes on with it.
Every item is listed with the reason. Then run gc to remove chunks no backup
references."""


def add_arguments(parser: CommandParser) -> None:
    """The options of ``recover``."""
    parser.describe(DESCRIPTION, (ExitCode.FAILED, ExitCode.NOT_FOUND))
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    jobs_location_options(parser)


def run_recover(args: argparse.Namespace, ctx: Context) -> int:
    """Recover every configured store and backend; exit 1 if a removal failed."""
    from pieceworks.cli.signals import signals_ignored  # noqa: PLC0415
    from pieceworks.common_algorithms.gc.recover import (  # noqa: PLC0415
        RecoverItem,
        RecoverOutcome,
        recover,
    )
    from pieceworks.execution.held import (  # noqa: PLC0415
        BoardJob,
        JobHeldJournal,
        jobs_on_board,
        without_held,
    )
    from pieceworks.protocols import PieceworksError, StoreMissing  # noqa: PLC0415

    # What jobs on the board hold is looked up first: if the board cannot be read,
    # nothing is removed (a resumed job would lose its snapshot and lease).
    on_board: dict[str, BoardJob] = {}
    if _jobs_configured(args, ctx):
        on_board = jobs_on_board(*reachable_jobs_locations(args, ctx.config))
    # One store or backend that cannot be opened (an off-site store unreachable, a
    # passphrase not given: a CliError, not a PieceworksError) is a failed item: the
    # others are still recovered.
    unopened: list[RecoverItem] = []
    stores, backends = [], {}
    for name in [args.store] if args.store else sorted(ctx.config.stores):
        try:
            stores.append(ctx.store(name))
        except StoreMissing as exc:  # not created here; a store named with --store: exit 3
            if args.store:
                raise
            ctx.out.warn(f"nothing to recover in store '{name}': {exc}")
        except (PieceworksError, CliError) as exc:
            if args.store:
                raise
            unopened.append(RecoverItem("store", name, name, "failed", f"cannot open it: {exc}"))
    for name in sorted(ctx.config.backends):
        try:
            backends[name] = ctx.backend(name)
        except (PieceworksError, CliError) as exc:
            unopened.append(RecoverItem("backend", name, name, "failed", f"cannot open it: {exc}"))
    seen = [without_held(s, on_board) for s in stores]
    stores = [s for s, _ in seen]
    journal = JobHeldJournal(ctx.config.home / "journal", on_board)
    with signals_ignored():
        done = recover(stores, backends, dry_run=args.dry_run, journals=[journal])
    held = [
        RecoverItem(h.kind, s.name, h.key, "kept", h.reason) for s, view in seen for h in view.held
    ]
    held += [
        RecoverItem(h.kind, str(journal.directory), h.key, "kept", h.reason) for h in journal.held
    ]
    outcome = RecoverOutcome((*unopened, *held, *done.items), done.dry_run)
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


def _jobs_configured(args: argparse.Namespace, ctx: Context) -> bool:
    """Whether a jobboard is named (options or ``[jobs]``); `ConfigError` if half of it is."""
    named = (
        getattr(args, "jobboard", None),
        getattr(args, "persistence", None),
        ctx.config.jobs.jobboard,
        ctx.config.jobs.persistence,
    )
    if not any(named):
        return False
    try:
        jobs_locations(args, ctx.config)
    except ConfigError as exc:
        raise ConfigError(f"recover: {exc} (to see which runs jobs on the board hold)") from None
    return True
