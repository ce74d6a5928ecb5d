"""The ``pieceworks`` argument parser, built from the table of commands.

`build_parser` adds each command of `pieceworks.cli.commands.COMMANDS`
with its summary and the common options; the command's own module declares
its arguments (``add_arguments(parser)`` beside its run function), its long
help and the exit codes its epilog lists. With ``lazy=True`` (what `main`
uses) a module is imported only when its command is parsed: ``pieceworks
--help`` imports no command module, and no command imports TaskFlow before
it runs. Each command's parser carries ``handler`` (``"module:function"``,
imported only when it runs) and ``needs_config`` (whether the configuration
is read before it starts).
"""

from __future__ import annotations

import argparse
import json

from pieceworks.cli.commands import COMMANDS
from pieceworks.cli.exit_codes import epilog
from pieceworks.cli.ids import id_type
from pieceworks.cli.options import (
    CODECS,
    KINDS,
    CommandParser,
    Commands,
    common_options,
    parse_size,
)

__all__ = ["CODECS", "KINDS", "build_parser", "id_type", "parse_size"]

_DESCRIPTION = """\
Capability-driven storage backup on OpenStack TaskFlow.

Back up volumes of a configured backend into a store, restore, verify, list
and delete backups, and see which strategies a driver allows. With no
configuration file, a backend and a store called 'local' live under
$PIECEWORKS_HOME (default ~/.local/share/pieceworks). Start with:
pieceworks demo"""


def _version() -> str:
    from importlib import metadata  # noqa: PLC0415 (slow to import, only for --version)

    try:
        return metadata.version("pieceworks")
    except metadata.PackageNotFoundError:
        return "(not installed)"


class _VersionAction(argparse.Action):
    """``--version``: print ``pieceworks <version>`` and exit (looked up only then).

    With ``--json`` (`as_json`) it is a JSON document, ``{"message_type":
    "version", "version"}``, as every output under ``--json`` is.
    """

    def __init__(
        self, option_strings: list[str], dest: str, as_json: bool = False, **kwargs: object
    ) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")
        self.as_json = as_json

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        if self.as_json:
            text = json.dumps({"message_type": "version", "version": _version()})
        else:
            text = f"pieceworks {_version()}"
        try:
            print(text, flush=True)
        except BrokenPipeError:
            parser.exit()
        except OSError as exc:  # > /dev/full: say so (exit 1), not a traceback
            parser.exit(1, f"pieceworks: error: cannot write the version: {exc.strerror or exc}\n")
        parser.exit()


def build_parser(*, lazy: bool = False, json_errors: bool = False) -> argparse.ArgumentParser:
    """The ``pieceworks`` parser with every command of the table.

    `lazy`: declare a command's arguments (importing its module) only when
    it is parsed; else now, for every command (what tests walk).
    `json_errors`: a usage error raises `pieceworks.cli.options.UsageError`
    (after the usage) instead of printing argparse's message.
    """
    parser = CommandParser(
        json_errors=json_errors,
        prog="pieceworks",
        description=_DESCRIPTION,
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options(suppress=False)],
    )
    parser.add_argument("--version", action=_VersionAction, as_json=json_errors)
    commands = Commands(
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
        "",
        json_errors=json_errors,
    )
    for name, info in COMMANDS.items():
        command = commands.add_lazily(
            name,
            info.module_path,
            info.function,
            info.arguments,
            summary=info.summary,
            aliases=info.aliases,
        )
        if not lazy:
            command.declare()
    return parser
