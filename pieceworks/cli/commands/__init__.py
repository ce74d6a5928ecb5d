"""Every ``pieceworks`` command, in the order ``--help`` lists them (as pip's table).

`COMMANDS` maps a command's name to the module that implements it, the
function that runs it (``run_x(args, ctx) -> int``, the exit code), the
one-line summary ``pieceworks --help`` shows, and the function of the same
module that declares its arguments (``add_arguments(parser)``, given a
`pieceworks.cli.options.CommandParser`). ``pieceworks --help`` reads only
this table; a command's module is imported when that command is parsed, and
its heavy imports (TaskFlow, the drivers) happen inside its run function.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["COMMANDS", "CommandInfo"]


class CommandInfo(NamedTuple):
    """Where a command lives: module, run function, summary, argument declaration."""

    #: Dotted path of the module (pieceworks.cli.commands.x, or pieceworks.cli.demo).
    module_path: str
    #: The function of the module that runs the command: ``(args, ctx) -> int``.
    function: str
    #: The line ``pieceworks --help`` shows.
    summary: str
    #: The function of the module that declares the arguments: ``(parser) -> None``.
    arguments: str = "add_arguments"
    #: Other names of the command.
    aliases: tuple[str, ...] = ()


_C = "pieceworks.cli.commands."

#: name -> where the command lives, in ``--help`` order.
COMMANDS: dict[str, CommandInfo] = {
    "demo": CommandInfo(
        "pieceworks.cli.demo",
        "run_demo_command",
        "back up, change, back up incrementally, restore and verify a sample volume",
    ),
    "drivers": CommandInfo(
        _C + "drivers",
        "run_drivers",
        "installed drivers and store drivers, with their capabilities",
        "add_drivers_arguments",
    ),
    "check-driver": CommandInfo(
        _C + "drivers",
        "run_check_driver",
        "verify a driver class, or a configured backend, and what it completes",
        "add_check_driver_arguments",
    ),
    "target": CommandInfo(
        _C + "target",
        "run_serve",
        "run a storage target (the service the remote driver talks to)",
    ),
    "plan": CommandInfo(
        _C + "plan",
        "run_plan",
        "show the strategies a backup, restore or replication would try",
    ),
    "find": CommandInfo(
        _C + "find", "run_find", "search the registry of configured backends by attribute"
    ),
    "backup": CommandInfo(_C + "backup", "run_backup", "back up a volume"),
    "restore": CommandInfo(
        _C + "restore_file",
        "run_restore_command",
        "restore a backup into a volume, a file or a block device",
    ),
    "verify": CommandInfo(_C + "verify", "run_verify", "check every chunk of a backup"),
    "list": CommandInfo(
        _C + "listing", "run_list", "list the backups in the store", "add_list_arguments"
    ),
    "volumes": CommandInfo(
        _C + "listing", "run_volumes", "list the volumes of the backend", "add_volumes_arguments"
    ),
    "replicate": CommandInfo(
        _C + "replicate", "run_replicate", "copy a volume or snapshot to another backend"
    ),
    "delete": CommandInfo(
        _C + "delete_many", "run_delete_command", "delete backups and the chunks only they used"
    ),
    "prune": CommandInfo(
        _C + "delete",
        "run_gc",
        "remove chunk objects no backup references (alias: gc)",
        "add_gc_arguments",
        aliases=("gc",),
    ),
    "forget": CommandInfo(
        _C + "forget",
        "run_forget",
        "remove backups by a retention policy (--keep-last, --keep-daily, ...)",
    ),
    "show": CommandInfo(
        _C + "show",
        "run_show",
        "show one backup: volume, strategy and why, chunks, bytes, labels",
    ),
    "stats": CommandInfo(
        _C + "stats", "run_stats", "backups, logical and stored bytes, dedup and compression ratios"
    ),
    "check": CommandInfo(
        _C + "check",
        "run_check",
        "check the whole store: manifests, chunks present and sized, a share read",
    ),
    "diff": CommandInfo(
        _C + "diff", "run_diff", "the byte ranges in which two backups of a volume differ"
    ),
    "recover": CommandInfo(
        _C + "recover",
        "run_recover",
        "remove what crashed runs left behind (leases, locks, temporaries)",
    ),
    "config": CommandInfo(
        _C + "show_config", "run_config", "show the effective configuration (secrets masked)"
    ),
    "key": CommandInfo(_C + "key", "run_key_list", "manage an encrypted store's passphrases"),
    "copy": CommandInfo(_C + "copy", "run_copy", "copy backups from one store to another"),
    "conductor": CommandInfo(
        _C + "conductor", "run_conductor_command", "claim and run posted jobs until stopped"
    ),
    "worker": CommandInfo(
        _C + "worker",
        "run_worker",
        "serve the data steps (transfer, restore write) of this host's backends",
    ),
    "jobs": CommandInfo(
        _C + "jobs", "run_jobs", "post, list, show, watch and cancel jobs run by conductors"
    ),
}
