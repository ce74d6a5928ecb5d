"""The ``pieceworks`` argument parser: every command, option and help page.

This module is deliberately light (argparse and the exit codes; oslo.utils
and importlib.metadata only when a size or ``--version`` is parsed):
``--help``, usage errors and configuration errors answer without importing
TaskFlow. Each subcommand names its implementation as ``handler``
(``"module:function"`` under `pieceworks.cli.commands`), imported only
when it runs, and says with ``needs_config`` whether the configuration is
read before it starts.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable, Sequence

from pieceworks.cli.commands import copy, key
from pieceworks.cli.commands._select import add_filter_options, label
from pieceworks.cli.exit_codes import ExitCode, epilog
from pieceworks.cli.ids import id_type

__all__ = ["CODECS", "build_parser", "id_type", "parse_size"]

#: The chunk codecs ``--codec`` offers (pieceworks.protocols.chunks.CODECS).
CODECS = ("zstd", "zlib", "none")
#: Registration kinds ``find --kind`` offers (pieceworks.registry.Kind).
KINDS = ("task", "flow", "task-class", "factory", "driver")
#: Backup strategies ``list --strategy`` offers (common_algorithms.BACKUP_STRATEGIES).
BACKUP_STRATEGIES = ("offload", "snapshot-stream", "direct-stream")

_DESCRIPTION = """\
Capability-driven storage backup on OpenStack TaskFlow.

Back up volumes of a configured backend into a store, restore, verify, list
and delete backups, and see which strategies a driver allows. With no
configuration file, a backend and a store called 'local' live under
$PIECEWORKS_HOME (default ~/.local/share/pieceworks). Start with:
pieceworks demo"""

_FAILED, _NOT_FOUND, _CORRUPT, _INTERRUPTED = (
    ExitCode.FAILED,
    ExitCode.NOT_FOUND,
    ExitCode.CORRUPT,
    ExitCode.INTERRUPTED,
)


def parse_size(text: str) -> int:
    """``4MiB``, ``4 MiB``, ``4MB`` (binary, as oslo.utils' IEC), ``4M`` or a byte count."""
    compact = text.replace(" ", "")
    if compact.isdigit():
        return int(compact)
    if compact[-1:].upper() in ("K", "M", "G", "T"):
        compact += "iB"
    from oslo_utils import strutils  # noqa: PLC0415 (slow to import: see cli/masking.py)

    try:
        return int(strutils.string_to_bytes(compact, "IEC", return_int=True))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use e.g. 4MiB, 512KiB or 1048576"
        ) from None


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name.

    The subcommands' copies default to SUPPRESS so that an option given
    before the command name is not reset by the subcommand's defaults.
    """
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("common options")

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group.add_argument(
        "--config",
        metavar="FILE",
        default=default(None),
        help="configuration file (default: $PIECEWORKS_CONFIG, else"
        " ~/.config/pieceworks/pieceworks.toml if it exists)",
    )
    group.add_argument(
        "--backend",
        metavar="NAME",
        type=id_type("backend name"),
        default=default(None),
        help="configured backend to use",
    )
    group.add_argument(
        "--store",
        metavar="NAME",
        type=id_type("store name"),
        default=default(None),
        help="configured store to use",
    )
    group.add_argument(
        "--password-file",
        metavar="FILE",
        default=default(None),
        help="passphrase of an encrypted store (else $PIECEWORKS_PASSWORD,"
        " $PIECEWORKS_PASSWORD_FILE, or a prompt on a terminal)",
    )
    group.add_argument(
        "--json", action="store_true", default=default(False), help="print one JSON document"
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress and no remarks; results and errors only",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="log more on stderr (-v: what runs, -vv: TaskFlow debug)",
    )
    return parser


class _Builder:
    """Adds subcommands with the common options and an exit-code epilog."""

    def __init__(self, common: argparse.ArgumentParser) -> None:
        self.common = common

    def add(
        self,
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: str,
        *,
        summary: str,
        description: str,
        codes: Iterable[ExitCode] = (),
        needs_config: bool = True,
        aliases: Sequence[str] = (),
    ) -> argparse.ArgumentParser:
        """Add `name`, run by `handler` (``module:function`` in pieceworks.cli.commands)."""
        parser = subparsers.add_parser(
            name,
            aliases=list(aliases),
            parents=[self.common],
            help=summary,
            description=description,
            epilog=epilog({ExitCode.OK, ExitCode.USAGE, *codes}),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(handler=handler, needs_config=needs_config)
        return parser

    def add_module(
        self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser], module: str
    ) -> argparse.ArgumentParser:
        """Add the command a module of pieceworks.cli.commands declares itself.

        The module (light at import: heavy imports live in its run function)
        has ``NAME``, ``HANDLER``, ``SUMMARY``, ``DESCRIPTION``, ``CODES``
        and ``add_arguments(parser)``.
        """
        mod = importlib.import_module(f"pieceworks.cli.commands.{module}")
        parser = self.add(
            subparsers,
            mod.NAME,
            mod.HANDLER,
            summary=mod.SUMMARY,
            description=mod.DESCRIPTION,
            codes=mod.CODES,
        )
        mod.add_arguments(parser)
        return parser


def _backup_request_options(parser: argparse.ArgumentParser) -> None:
    """The options that make a backup request (``backup`` and ``plan backup``)."""
    parser.add_argument(
        "--volume",
        metavar="ID",
        type=id_type("volume id"),
        required=True,
        help="the volume to back up",
    )
    parser.add_argument(
        "--in-use",
        action="store_true",
        help="the volume is attached and may change: read a snapshot of it",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="allow reading an in-use volume directly if nothing better works (recorded)",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="parent on the latest backup of the volume: upload only new chunks",
    )
    parser.add_argument(
        "--codec", choices=CODECS, default="zstd", help="chunk compression (default zstd)"
    )
    parser.add_argument(
        "--chunk-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="chunk size, 64KiB to 64MiB (default 4MiB)",
    )


def _replicate_request_options(parser: argparse.ArgumentParser) -> None:
    """The options that make a replication request (``replicate``, ``plan replicate``)."""
    parser.add_argument(
        "--from-backend",
        metavar="A",
        type=id_type("backend name"),
        required=True,
        help="the backend holding the volume",
    )
    parser.add_argument(
        "--volume", metavar="V", type=id_type("volume id"), required=True, help="the volume to copy"
    )
    parser.add_argument(
        "--to-backend",
        metavar="B",
        type=id_type("backend name"),
        required=True,
        help="the backend to copy to",
    )
    parser.add_argument(
        "--to-volume",
        metavar="W",
        type=id_type("target volume id"),
        help="the volume to create (default: V); an existing one only with --overwrite",
    )
    parser.add_argument(
        "--snapshot",
        metavar="S",
        type=id_type("snapshot id"),
        help="copy this existing snapshot of V (it is kept)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace W if it exists (the report gives its old and new size)",
    )
    parser.add_argument(
        "--in-use",
        action="store_true",
        help="V is attached and may change: read a temporary snapshot of it",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="allow reading an in-use V directly when A cannot snapshot (recorded)",
    )
    parser.add_argument(
        "--chunk-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="copy and chunk size, 64KiB to 64MiB (default 4MiB)",
    )


def _plan_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json", "dot", "svg"),
        default="text",
        help="text (default), json (same as --json), dot, or svg (needs Graphviz)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the plan to FILE")


def _operations(b: _Builder, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = b.add(
        sub,
        "backup",
        "backup:run_backup",
        summary="back up a volume",
        description=(
            "Back up --volume of the backend into the store. The plan (see `pieceworks plan\n"
            "backup`) picks the first eligible strategy: offload, snapshot-stream or\n"
            "direct-stream; a strategy that fails is reverted and the next one runs.\n"
            "Ctrl-C stops the backup: no manifest is written, the temporary snapshot and\n"
            "the store lease are removed, and the message says what chunks remain."
        ),
        codes=(_FAILED, _NOT_FOUND, _CORRUPT, _INTERRUPTED),
    )
    _backup_request_options(backup)
    backup.add_argument(
        "--label",
        dest="labels",
        metavar="K=V",
        type=label,
        action="append",
        help="record this label in the backup (repeatable); shown by list and show",
    )

    restore = b.add(
        sub,
        "restore",
        "restore_file:run_restore_command",
        summary="restore a backup into a volume, a file or a block device",
        description=(
            "Restore BACKUP_ID into a new volume of the backend: --volume ID, or by default\n"
            "<volume>-from-<BACKUP_ID> (its name is printed). A volume that exists, the\n"
            "backup's own included, is replaced only with --overwrite (else exit 2), and\n"
            "then the report gives its old and new size. Every chunk is checked against\n"
            "its sha256 before it is written; the volume is written only when the whole\n"
            "restore succeeded.\n\n"
            "--to-file PATH restores into a local file instead (sparse: holes are not\n"
            "written; it appears whole or not at all) or into a block device (written in\n"
            "place, holes as zeros). An existing PATH is refused unless --overwrite."
        ),
        codes=(_FAILED, _NOT_FOUND, _CORRUPT, _INTERRUPTED),
    )
    restore.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    restore.add_argument(
        "--volume",
        metavar="ID",
        type=id_type("volume id"),
        help="target volume (default: a new one, <volume>-from-<BACKUP_ID>)",
    )
    restore.add_argument(
        "--to-file",
        metavar="PATH",
        help="restore into this local file or block device instead of a backend volume",
    )
    restore.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the target volume (or --to-file PATH) if it exists; the report says"
        " the old and new size",
    )

    verify = b.add(
        sub,
        "verify",
        "verify:run_verify",
        summary="check every chunk of a backup",
        description=(
            "Fetch every chunk of BACKUP_ID from the store and check its sha256; report\n"
            "every missing or damaged chunk with its volume offset (exit 1 if any).\n"
            "A chunk object whose content does not match its hash is moved aside to\n"
            "quarantine/ in the store, so that the next backup of that data stores it\n"
            "again. A damaged manifest is corruption (exit 4).\n"
            "--against-source instead reads the backup's volume (through a temporary\n"
            "snapshot when the backend has one) and compares it chunk by chunk with the\n"
            "backup, naming every differing offset (exit 4 on a difference): it catches a\n"
            "driver whose extents or changed blocks left data out. Meaningful while the\n"
            "volume has not changed since the backup."
        ),
        codes=(_FAILED, _NOT_FOUND, _CORRUPT, _INTERRUPTED),
    )
    verify.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    verify.add_argument(
        "--against-source",
        action="store_true",
        help="compare with the volume on its backend (--backend, else the backup's)",
    )
    verify.add_argument(
        "--no-quarantine",
        action="store_true",
        help="only report damaged chunks; leave them where they are (read-only check)",
    )

    listing = b.add(
        sub,
        "list",
        "listing:run_list",
        summary="list the backups in the store",
        description=(
            "List the backups in the store, oldest first: id, volume, backend, creation\n"
            "time (UTC), volume size, bytes it added to the store, strategy, parent and\n"
            "labels. --volume, --label, --since, --until and --strategy keep only the\n"
            "backups matching all of them. A manifest that cannot be read is listed as\n"
            "UNREADABLE, its reason is printed, and the exit code is 4; every readable\n"
            "backup is still listed."
        ),
        codes=(_FAILED, _NOT_FOUND, _CORRUPT),
    )
    add_filter_options(listing)
    listing.add_argument(
        "--strategy",
        dest="strategies",
        choices=BACKUP_STRATEGIES,
        action="append",
        help="only backups made by this strategy (repeatable)",
    )

    b.add(
        sub,
        "volumes",
        "listing:run_volumes",
        summary="list the volumes of the backend",
        description="List the volumes of the backend and their sizes.",
        codes=(_FAILED, _NOT_FOUND),
    )

    replicate = b.add(
        sub,
        "replicate",
        "replicate:run_replicate",
        summary="copy a volume or snapshot to another backend",
        description=(
            "Copy --volume V of --from-backend A (or its --snapshot S) into --to-volume W\n"
            "of --to-backend B. The plan (see `pieceworks plan replicate`) picks the first\n"
            "eligible strategy: native (A copies to B itself), stream (through pieceworks,\n"
            "hashed end to end) or via-store (A pushes into the store, B pulls: --store).\n"
            "A strategy that fails is reverted (temporary snapshot deleted, partial copy\n"
            "removed) and the next one runs. An in-use V is read from a temporary\n"
            "snapshot, or directly only with --force."
        ),
        codes=(_FAILED, _NOT_FOUND, _CORRUPT, _INTERRUPTED),
    )
    _replicate_request_options(replicate)

    delete = b.add(
        sub,
        "delete",
        "delete_many:run_delete_command",
        summary="delete backups and the chunks only they used",
        description=(
            "Delete each BACKUP_ID: its manifest is removed first, then every chunk object no\n"
            "other backup references (deferred while a backup is in progress: the backups\n"
            "are deleted, the collection is left to a later gc, and the exit code is 75).\n"
            "With several ids, all are checked first: an unknown one deletes nothing (exit 3)."
        ),
        codes=(_FAILED, _NOT_FOUND, _CORRUPT, ExitCode.DEFERRED, _INTERRUPTED),
    )
    delete.add_argument("backup_ids", metavar="BACKUP_ID", nargs="+", type=id_type("backup id"))

    gc = b.add(
        sub,
        "prune",
        "delete:run_gc",
        summary="remove chunk objects no backup references (alias: gc)",
        description=(
            "Remove every chunk object that no backup references (left by forget, delete,\n"
            "or an interrupted or failed backup). Deferred while a backup is in progress:\n"
            "nothing is removed, the backups in the way are named and the exit code is 75.\n"
            "Leases and locks of dead runs are removed first. `pieceworks gc` is the same\n"
            "command."
        ),
        codes=(_FAILED, _CORRUPT, ExitCode.DEFERRED),
        aliases=("gc",),
    )
    gc.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    b.add_module(sub, "forget")
    for module in ("show", "stats", "check", "diff"):
        b.add_module(sub, module)

    recover = b.add(
        sub,
        "recover",
        "recover:run_recover",
        summary="remove what crashed runs left behind (leases, locks, temporaries)",
        description=(
            "Remove what killed or crashed runs left behind, on every configured store and\n"
            "backend: leases and locks of dead owners (same host: the process is gone;\n"
            "another host: not renewed for 2 minutes), the temporary snapshots their run\n"
            "journals name, and temporary files (.tmp-*, .incoming) of dead writers. What a\n"
            "live run owns is kept. Every item is listed with the reason. Then run gc to\n"
            "remove chunks no backup references."
        ),
        codes=(_FAILED, _NOT_FOUND),
    )
    recover.add_argument("--dry-run", action="store_true", help="only list what would be removed")

    b.add(
        sub,
        "config",
        "show_config:run_config",
        summary="show the effective configuration (secrets masked)",
        description=(
            "Show which configuration file is used and every backend, store and engine\n"
            "setting, built-in defaults included. Secret options are shown as ***."
        ),
    )


def _planning(b: _Builder, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    codes = (_FAILED, _NOT_FOUND)
    plan = b.add(
        sub,
        "plan",
        "plan:run_plan",
        summary="show the strategies a backup, restore or replication would try",
        description=(
            "Show the plan of a backup, restore or replication: every strategy in order,\n"
            "whether it can run on these backends and store and why; the first eligible\n"
            "one runs, the next ones are its fallbacks. Exit 1 if no strategy can run."
        ),
        codes=codes,
    )
    operations = plan.add_subparsers(dest="operation", metavar="OPERATION", required=True)
    plan_backup = b.add(
        operations,
        "backup",
        "plan:run_plan_backup",
        summary="plan a backup",
        description="Show the backup plan of --volume with the given flags.",
        codes=codes,
    )
    _backup_request_options(plan_backup)
    _plan_output_options(plan_backup)
    plan_restore = b.add(
        operations,
        "restore",
        "plan:run_plan_restore",
        summary="plan a restore",
        description="Show the restore plan of BACKUP_ID into --volume (default: its volume).",
        codes=codes,
    )
    plan_restore.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    plan_restore.add_argument(
        "--volume",
        metavar="ID",
        type=id_type("volume id"),
        help="target volume (default: a new one, as restore picks)",
    )
    _plan_output_options(plan_restore)
    plan_replicate = b.add(
        operations,
        "replicate",
        "plan:run_plan_replicate",
        summary="plan a replication",
        description="Show the replication plan of --volume from --from-backend to --to-backend.",
        codes=codes,
    )
    _replicate_request_options(plan_replicate)
    _plan_output_options(plan_replicate)

    find = b.add(
        sub,
        "find",
        "find:run_find",
        summary="search the registry of configured backends by attribute",
        description=(
            "Register every configured backend (its driver and its flows) and search by\n"
            "attribute: a capability as capability:NAME (capability:snapshot,\n"
            "capability:stream-out, ...) or a tag (live-backup, fast-backup, slow-backup,\n"
            "incremental-backup, sparse-backup, offload-restore, stream-restore, backup,\n"
            "restore, verify, delete). A match provides every ATTR, at least one --any\n"
            "and no --none. --backend NAME keeps only that backend's registrations;\n"
            "--buildable leaves drivers out. No match: exit 3 with the registry's\n"
            "explanation (the closest registrations, what each lacks).\n"
            "--json prints each match's description: build parameters, the symbols it\n"
            "requires and provides, a summary.\n\n"
            "example: pieceworks find --any fast-backup live-backup --none slow-backup"
        ),
        codes=(_NOT_FOUND,),
    )
    find.add_argument("attributes", metavar="ATTR", nargs="*", help="attributes all required")
    find.add_argument(
        "--any", dest="any_of", metavar="ATTR", nargs="+", action="extend", help="one of these"
    )
    find.add_argument(
        "--none", dest="none_of", metavar="ATTR", nargs="+", action="extend", help="none of these"
    )
    find.add_argument("--kind", choices=KINDS, help="only registrations of this kind")
    find.add_argument(
        "--buildable", action="store_true", help="only pieces that build a task or flow"
    )


def _tools(b: _Builder, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = b.add(
        sub,
        "demo",
        "pieceworks.cli.demo:run_demo_command",
        summary="back up, change, back up incrementally, restore and verify a sample volume",
        description=(
            "Run the whole job on embedded defaults in a fresh temporary directory (or\n"
            "--dir): create a sample volume of random data, zeros and text, show the plan,\n"
            "back it up while in use, change a few percent, back it up incrementally,\n"
            "restore it into a new volume, verify, and print a summary. Your configuration\n"
            "is not used. Exit 1 if the restored volume differs."
        ),
        codes=(_FAILED, _INTERRUPTED),
        needs_config=False,
    )
    demo.add_argument("--dir", metavar="DIR", help="work in DIR (kept) instead of a temp dir")
    demo.add_argument(
        "--size",
        type=parse_size,
        default=256 * 1024 * 1024,
        metavar="SIZE",
        help="sample volume size (default 256MiB)",
    )
    demo.add_argument("--keep", action="store_true", help="keep the temporary directory")

    b.add(
        sub,
        "drivers",
        "drivers:run_drivers",
        summary="installed drivers and store drivers, with their capabilities",
        description=(
            "List the drivers installed as entry points (pieceworks.drivers) as a matrix of\n"
            "the capabilities each provides, the strategies those complete, the store\n"
            "drivers (pieceworks.stores), and every entry point that failed to load."
        ),
        needs_config=False,
    )
    check = b.add(
        sub,
        "check-driver",
        "drivers:run_check_driver",
        summary="verify a driver class, or a configured backend, and what it completes",
        description=(
            "Import MODULE:CLASS (the current directory is importable), check every\n"
            "capability it claims (members, parameter and return annotations, async def,\n"
            "abstract methods left: what registration checks), and list the backup and\n"
            "restore strategies its pieces complete.\n"
            "With --backend NAME instead of MODULE:CLASS, build that configured backend\n"
            "from its configuration section (a constructor that does not take the\n"
            "section's options is a configuration error), verify it the same way, and run\n"
            "the conformance checks that need no in-place write on a scratch volume it\n"
            "creates and removes (when the backend can: stream-in and delete_volume).\n"
            "Exit 1 with the InvalidDriver message if a capability is incomplete, if it\n"
            "completes no strategy at all or if a conformance check fails; exit 2 if\n"
            "MODULE:CLASS cannot be imported or the backend's section is wrong."
        ),
        codes=(_FAILED,),
        needs_config=False,
    )
    check.add_argument(
        "target",
        metavar="MODULE:CLASS",
        nargs="?",
        help="the driver class to check (or give --backend NAME)",
    )
    check.add_argument("--name", help="the name used in messages (default: the class name)")

    target = b.add(
        sub,
        "target",
        "target:run_serve",
        summary="run a storage target (the service the remote driver talks to)",
        description="Storage target commands: `pieceworks target serve --dir DIR`.",
        needs_config=False,
    )
    target_commands = target.add_subparsers(dest="target_command", metavar="ACTION", required=True)
    serve = b.add(
        target_commands,
        "serve",
        "target:run_serve",
        summary="serve a directory of volumes on HTTP",
        description=(
            "Own the volumes in --dir and serve them to pieceworks managers (driver\n"
            "'remote', option url). The target snapshots, pushes to and pulls from stores\n"
            "itself and replicates to peer targets: no volume byte crosses the manager.\n"
            "Prints 'listening on http://HOST:PORT' once ready (--port 0 picks a free\n"
            "port). The token comes from --token-file or $PIECEWORKS_TARGET_TOKEN.\n"
            "Runs until Ctrl-C or SIGTERM."
        ),
        needs_config=False,
    )
    serve.add_argument("--dir", required=True, help="directory of volumes (created if missing)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    serve.add_argument("--token-file", help="read the bearer token from this file")
    serve.add_argument("--max-jobs", type=int, default=4, help="operations at once (default 4)")


#: Job priorities ``jobs post --priority`` offers (pieceworks.execution.jobs.PRIORITIES).
PRIORITIES = ("very-low", "low", "normal", "high", "very-high")


def _jobs_location_options(parser: argparse.ArgumentParser) -> None:
    """Where jobs live; default: the configuration's ``[jobs]`` section."""
    parser.add_argument(
        "--jobboard", metavar="URL", help="redis://HOST:PORT/NAMESPACE (default: [jobs] jobboard)"
    )
    parser.add_argument(
        "--persistence",
        metavar="URL",
        help="TaskFlow persistence, postgresql://... (default: [jobs] persistence)",
    )


def _scale(b: _Builder, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    conductor = b.add(
        sub,
        "conductor",
        "conductor:run_conductor_command",
        summary="claim and run posted jobs until stopped",
        description=(
            "Run a TaskFlow conductor: claim jobs from the jobboard, one at a time, and run\n"
            "them with their state in the shared persistence backend. Only jobs whose\n"
            "backends and stores this host's configuration has (and, with --backends,\n"
            "only those backends) are claimed; others are left for another conductor.\n"
            "A killed conductor's claim expires after --claim-expiry seconds and another\n"
            "resumes its job. SIGTERM or Ctrl-C: the running job stops after its current\n"
            "step and is handed over at once."
        ),
        codes=(_FAILED,),
    )
    _jobs_location_options(conductor)
    conductor.add_argument("--name", help="this conductor's name (default: conductor-HOST-PID)")
    conductor.add_argument(
        "--backends", metavar="NAME[,NAME]", help="serve only these backends (default: all)"
    )
    conductor.add_argument("--engine", choices=("serial", "parallel"), default="serial")
    conductor.add_argument(
        "--max-dispatches", type=int, metavar="N", help="stop after N jobs (default: never)"
    )
    conductor.add_argument(
        "--wait-timeout", type=float, default=0.5, metavar="S", help="seconds between board polls"
    )
    conductor.add_argument(
        "--claim-expiry",
        type=float,
        metavar="S",
        help="seconds a dead conductor's claim survives (default: [jobs] claim_expiry, else 30)",
    )
    conductor.add_argument("--events", metavar="FILE", help="append JSON-lines events to FILE")
    conductor.add_argument(
        "--transport",
        metavar="URL",
        help="run data steps on workers: amqp://USER:PASS@HOST/ (default: [jobs] transport)",
    )
    conductor.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on PORT (0: a free one, printed)",
    )
    conductor.add_argument(
        "--metrics-addr", default="127.0.0.1", metavar="ADDR", help="address for --metrics-port"
    )

    b.add_module(sub, "worker")
    jobs = b.add(
        sub,
        "jobs",
        "jobs:run_jobs",
        summary="post, list, show, watch and cancel jobs run by conductors",
        description="Jobs on the jobboard: `pieceworks jobs post|list|show|watch|cancel|migrate`.",
    )
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    post = b.add(
        actions,
        "post",
        "jobs:run_post",
        summary="post a backup or restore job; print its id",
        description=(
            "Post a job for any conductor that has the backend and store (named by\n"
            "--backend and --store: each conductor resolves them from its own\n"
            "configuration, so no option or secret travels with the job). Prints the\n"
            "job id (--json: an object)."
        ),
        codes=(_FAILED,),
    )
    kinds = post.add_subparsers(dest="post_kind", metavar="KIND", required=True)
    post_backup = b.add(
        kinds, "backup", "jobs:run_post", summary="post a backup", description="Post a backup job."
    )
    _backup_request_options(post_backup)
    post_restore = b.add(
        kinds,
        "restore",
        "jobs:run_post",
        summary="post a restore",
        description="Post a job restoring BACKUP_ID into --volume ID.",
    )
    post_restore.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    post_restore.add_argument(
        "--volume", metavar="ID", type=id_type("volume id"), required=True, help="target volume"
    )
    for parser in (post_backup, post_restore):
        _jobs_location_options(parser)
        parser.add_argument("--priority", choices=PRIORITIES, default="normal")

    listing = b.add(
        actions,
        "list",
        "jobs:run_list",
        summary="jobs on the board and finished jobs still logged",
        description="List jobs, oldest first: id, state, owner, name.",
    )
    listing.add_argument(
        "--state", help="only jobs in this state (UNCLAIMED, CLAIMED, SUCCESS, FAILURE...)"
    )
    show = b.add(
        actions,
        "show",
        "jobs:run_show",
        summary="one job: state, owner, each step, result or reason for failure",
        description="Show job ID. Exit 3 if no such job is known.",
        codes=(_NOT_FOUND,),
    )
    show.add_argument("job_id", metavar="ID")
    watch = b.add(
        actions,
        "watch",
        "jobs:run_watch",
        summary="follow a job until it ends; exit with its outcome",
        description=(
            "Print job ID's state and steps as they change until it ends. Exit 0 if it\n"
            "succeeded, 1 if it failed or was cancelled, 3 if no such job is known."
        ),
        codes=(_FAILED, _NOT_FOUND),
    )
    watch.add_argument("job_id", metavar="ID")
    watch.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    cancel = b.add(
        actions,
        "cancel",
        "jobs:run_cancel",
        summary="cancel a job",
        description=(
            "Cancel job ID: a waiting job is removed from the board and ends REVERTED;\n"
            "a running job's conductor starts no further step, reverts and consumes it."
        ),
        codes=(_FAILED, _NOT_FOUND),
    )
    cancel.add_argument("job_id", metavar="ID")
    migrate = b.add(
        actions,
        "migrate",
        "jobs:run_migrate",
        summary="bring the persistence backend's schema up to date",
        description="Run TaskFlow's schema migrations on the persistence backend once.",
    )
    for parser in (listing, show, watch, cancel, migrate):
        _jobs_location_options(parser)


def _version() -> str:
    from importlib import metadata  # noqa: PLC0415 (slow to import, only for --version)

    try:
        return metadata.version("pieceworks")
    except metadata.PackageNotFoundError:
        return "(not installed)"


class _VersionAction(argparse.Action):
    """``--version``: print ``pieceworks <version>`` and exit (looked up only then)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"pieceworks {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``pieceworks`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pieceworks",
        description=_DESCRIPTION,
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(suppress=False)],
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    builder = _Builder(_common_options(suppress=True))
    _tools(builder, sub)
    _planning(builder, sub)
    _operations(builder, sub)
    key.add_arguments(builder, sub)
    copy.add_arguments(builder, sub)
    _scale(builder, sub)
    return parser
