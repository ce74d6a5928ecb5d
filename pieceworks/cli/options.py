"""How a command declares itself, and the option groups several commands share.

A command module (`pieceworks.cli.commands`) declares its arguments in a
function beside its ``run_*`` function, ``add_arguments(parser)``, which
receives a `CommandParser`: argparse's parser plus `CommandParser.describe`
(the long help, the exit codes the epilog lists, whether the configuration
is read first) and `CommandParser.add_commands` (nested actions such as
``plan backup``, ``jobs post``). The groups of options two commands share
(a backup request, a replication request, the jobboard's location...) are
functions here.

Light on purpose, like the parser: argparse, the exit-code table and the id
check; oslo.utils only when a size is parsed.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from pieceworks.cli.exit_codes import ExitCode, epilog
from pieceworks.cli.ids import id_type
from pieceworks.protocols.chunks import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE

__all__ = [
    "BACKUP_STRATEGIES",
    "CODECS",
    "KINDS",
    "MAX_SECONDS",
    "PRIORITIES",
    "CommandParser",
    "Commands",
    "UsageError",
    "backup_request_options",
    "broker_url",
    "common_options",
    "jobs_location_options",
    "decimal_number",
    "parse_size",
    "plan_output_options",
    "port_number",
    "non_negative_count",
    "positive_count",
    "positive_seconds",
    "replicate_request_options",
    "whole_number",
]

#: The chunk codecs ``--codec`` offers (pieceworks.protocols.chunks.CODECS).
CODECS = ("zstd", "zlib", "none")
#: Registration kinds ``find --kind`` offers (pieceworks.registry.Kind).
KINDS = ("task", "flow", "task-class", "factory", "driver")
#: Backup strategies ``list --strategy`` offers (common_algorithms.BACKUP_STRATEGIES).
BACKUP_STRATEGIES = ("offload", "snapshot-stream", "direct-stream")
#: Job priorities ``jobs post --priority`` offers (pieceworks.execution.jobs.PRIORITIES).
PRIORITIES = ("very-low", "low", "normal", "high", "very-high")


#: A whole number as the command line takes it: ASCII digits, an optional sign.
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
#: A decimal number as the command line takes it: ASCII digits, point, exponent.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
#: A size: ASCII digits (a point allowed), then a unit, if any, in ASCII letters.
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", re.ASCII)


def whole_number(text: str) -> int | None:
    """`text` (spaces around allowed) as an int, or None unless ASCII digits with a sign.

    Python's `int` also reads ``1_0`` as 10 and other scripts' digits (``٣``
    as 3): a number an operator did not mean must be a usage error.
    """
    stripped = text.strip()
    return int(stripped) if _WHOLE.fullmatch(stripped) else None


def decimal_number(text: str) -> float | None:
    """`text` (spaces around allowed) as a float, or None (see `whole_number`).

    Python's `float` also reads ``nan``, ``inf``, ``1_0`` and other scripts' digits.
    """
    stripped = text.strip()
    return float(stripped) if _DECIMAL.fullmatch(stripped) else None


def parse_size(text: str) -> int:
    """``4MiB``, ``4 MiB``, ``4MB`` (binary, as oslo.utils' IEC), ``4M`` or a byte count.

    The number is ASCII digits: oslo.utils' parser also reads other
    scripts' digits (``٣MiB``) and a sign (``-3MiB``).
    """
    found = _SIZE.fullmatch(text.replace(" ", ""))
    if found is not None:
        number, unit = found.groups()
        if not unit or unit.upper() == "B":
            if "." not in number:
                return int(number)
        else:
            if len(unit) == 1 and unit.upper() in "KMGTPE":  # 4M, 4m: binary, as 4MiB
                unit = unit.upper() + "iB"
            from oslo_utils import strutils  # noqa: PLC0415 (slow to import: see cli/masking.py)

            try:
                return int(strutils.string_to_bytes(number + unit, "IEC", return_int=True))
            except ValueError:
                pass
    raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 4MiB, 512KiB or 1048576")


def parse_chunk_size(text: str) -> int:
    """`parse_size`, 64 KiB to 64 MiB: out of range is a usage error, as a bad size is."""
    size = parse_size(text)
    if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
        raise argparse.ArgumentTypeError(
            f"chunk size {text!r} ({size} bytes) out of range: use 64KiB to 64MiB"
        )
    return size


#: The most seconds a timing may be (365 days): a claim expiry, a timeout or a
#: poll interval beyond it is a typo. Far larger ones broke later, unexplained:
#: a conductor's ``--claim-expiry 1e300`` renewed its claims by
#: ``Event.wait(1e300 / 3)`` (OverflowError: above `threading.TIMEOUT_MAX`,
#: about 292 years) and logged "the jobboard is unreachable" for ever.
MAX_SECONDS = 365 * 86400


def positive_seconds(text: str) -> float:
    """A number of seconds above 0 and at most `MAX_SECONDS` (``--timeout``), else a usage error."""
    value = decimal_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}")
    if not 0 < value <= MAX_SECONDS:  # nan and inf fail it too
        raise argparse.ArgumentTypeError(
            f"seconds must be a positive finite number, at most {MAX_SECONDS} (365 days),"
            f" not {text!r}"
        )
    return value


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")


def broker_url(text: str) -> str:
    """A broker URL (``--transport amqp://USER:PASS@HOST/``), as ``[jobs] transport`` must be.

    Anything without ``scheme://`` is a usage error: kombu read ``notaurl``
    as a host name, and the worker failed to reach it (exit 1,
    ``broker-unavailable``) where the same value in ``[jobs]`` is a
    configuration error. The value is not echoed (a URL may hold a password).
    """
    if not _URL.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError("must be a URL: scheme://... (e.g. amqp://HOST/)")
    return text.strip()


def port_number(text: str) -> int:
    """A TCP port to listen on, 0 (a free one) to 65535: anything else is a usage error.

    Out of range, the socket library raised an ``OverflowError`` (or, below
    0, a ``gaierror``) when the listener was bound: an unexpected error.
    """
    value = whole_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: a whole number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} out of range: use 0 (a free one) to 65535")
    return value


def positive_count(text: str) -> int:
    """A whole number of at least 1 (``--max-jobs``): anything else is a usage error."""
    return _count_at_least(text, 1)


def non_negative_count(text: str) -> int:
    """A whole number of at least 0 (``--max-dispatches``): anything else is a usage error.

    A negative count was taken as 0 (the conductor stopped before its first job).
    """
    return _count_at_least(text, 0)


def _count_at_least(text: str, minimum: int) -> int:
    value = whole_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: a whole number")
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
    return value


def output_path(text: str) -> str:
    """A file to write (``-o FILE``): an empty or blank name is a usage error, not stdout."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty file name: give the file to write, or omit -o")
    return text


def common_options(suppress: bool) -> CommandParser:
    """Options every command takes, before or after its name.

    The subcommands' copies default to SUPPRESS so that an option given
    before the command name is not reset by the subcommand's defaults.
    """
    parser = CommandParser(add_help=False)
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


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    _SubParsers = argparse._SubParsersAction


class _DeclaringSubParsersAction(_SubParsers):
    """Subcommands whose arguments are declared only when one of them is chosen."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        chosen = None
        if isinstance(values, Sequence) and values:
            chosen = self._name_parser_map.get(str(values[0]))
            if isinstance(chosen, CommandParser):
                chosen.declare()
        super().__call__(parser, namespace, values, option_string)
        # argparse hands what the command did not recognise up to the top parser,
        # whose error shows the top-level usage; the command's own usage says more.
        extras = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, None)
        if extras and chosen is not None:
            chosen.error(f"unrecognized arguments: {' '.join(extras)}")


class UsageError(SystemExit):
    """Bad arguments (exit 2), raised instead of printing when errors are JSON.

    `prog` is the command (``pieceworks backup``), `message` argparse's text.
    """

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(2)
        self.prog = prog
        self.message = message


class CommandParser(argparse.ArgumentParser):
    """A command's parser: its arguments come from its module, maybe later.

    `pending` (set by `Commands.add_lazily`) declares the arguments the
    first time the command is parsed, so that ``pieceworks --help`` imports
    no command module; `declare` runs it now. With `json_errors` a usage
    error prints the usage and raises `UsageError` for the caller to report
    (as JSON); else argparse prints it and exits 2.
    """

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _DeclaringSubParsersAction)
        #: The module of pieceworks.cli.commands (dotted path) that runs this command.
        self.module_path = ""
        self.pending: Callable[[CommandParser], None] | None = None
        self.json_errors = json_errors

    def error(self, message: str) -> NoReturn:
        """A usage error: argparse's message and exit 2, or `UsageError` (`json_errors`)."""
        if not self.json_errors:
            super().error(message)
        self.print_usage(sys.stderr)
        raise UsageError(self.prog, message)

    def declare(self) -> None:
        """Declare the arguments now if they are still pending (and nested ones)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending(self)

    def describe(
        self,
        description: str,
        codes: Iterable[ExitCode] = (),
        *,
        needs_config: bool = True,
        runs_flow: bool = False,
    ) -> None:
        """The long help, the exit codes (besides 0 and 2), if the config is read first,
        and if the command runs a flow through `Context.engine_options` (its start-up then
        lasts until that call: `pieceworks.cli.startup`)."""
        self.description = description or None
        self.epilog = epilog({ExitCode.OK, ExitCode.USAGE, *codes})
        self.set_defaults(needs_config=needs_config, runs_flow=runs_flow)

    def add_commands(self, dest: str, metavar: str = "ACTION") -> Commands:
        """Nested commands (``plan backup``...), run by functions of this command's module."""
        action = self.add_subparsers(dest=dest, metavar=metavar, required=True)
        return Commands(action, self.module_path, json_errors=self.json_errors)


class Commands:
    """Adds commands with the common options, one module's functions as handlers."""

    def __init__(
        self,
        action: argparse._SubParsersAction[CommandParser],
        module_path: str,
        *,
        json_errors: bool = False,
    ) -> None:
        self.action = action
        self.module_path = module_path
        self.json_errors = json_errors
        self.common = common_options(suppress=True)

    def add(
        self,
        name: str,
        function: str,
        *,
        summary: str,
        description: str = "",
        codes: Iterable[ExitCode] = (),
        needs_config: bool = True,
        aliases: Sequence[str] = (),
        module_path: str = "",
    ) -> CommandParser:
        """Add `name`, run by `function` of the module (default: this one's)."""
        module_path = module_path or self.module_path
        parser = self.action.add_parser(
            name,
            aliases=list(aliases),
            parents=[self.common],
            help=summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            json_errors=self.json_errors,
        )
        parser.module_path = module_path
        parser.set_defaults(handler=f"{module_path}:{function}")
        parser.describe(description, codes, needs_config=needs_config)
        return parser

    def add_lazily(
        self,
        name: str,
        module_path: str,
        function: str,
        arguments: str,
        *,
        summary: str,
        aliases: Sequence[str] = (),
    ) -> CommandParser:
        """Add `name`; ``module_path:arguments(parser)`` declares it when it is parsed."""
        parser = self.add(name, function, summary=summary, aliases=aliases, module_path=module_path)

        def pending(parser: CommandParser) -> None:
            getattr(importlib.import_module(module_path), arguments)(parser)

        parser.pending = pending
        return parser


def backup_request_options(parser: argparse.ArgumentParser) -> None:
    """The options that make a backup request (``backup``, ``plan backup``, ``jobs post``)."""
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
        type=parse_chunk_size,
        default=None,
        metavar="SIZE",
        help="chunk size, 64KiB to 64MiB (default 4MiB)",
    )


def replicate_request_options(parser: argparse.ArgumentParser) -> None:
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
        type=parse_chunk_size,
        default=None,
        metavar="SIZE",
        help="copy and chunk size, 64KiB to 64MiB (default 4MiB)",
    )


def plan_output_options(parser: argparse.ArgumentParser) -> None:
    """``--format`` and ``--output`` of the ``plan`` actions."""
    parser.add_argument(
        "--format",
        choices=("text", "json", "dot", "svg"),
        default="text",
        help="text (default), json (same as --json), dot, or svg (needs Graphviz)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=output_path,
        metavar="FILE",
        help="write the plan to FILE ('-': standard output, as without -o)",
    )


def jobs_location_options(parser: argparse.ArgumentParser) -> None:
    """Where jobs live; default: the configuration's ``[jobs]`` section."""
    parser.add_argument(
        "--jobboard", metavar="URL", help="redis://HOST:PORT/NAMESPACE (default: [jobs] jobboard)"
    )
    parser.add_argument(
        "--persistence",
        metavar="URL",
        help="TaskFlow persistence, postgresql://... (default: [jobs] persistence)",
    )


def exchange_option(parser: argparse.ArgumentParser) -> None:
    """``--exchange``: the AMQP exchange that conductors and workers share."""
    parser.add_argument(
        "--exchange",
        default="pieceworks",
        metavar="NAME",
        help="the AMQP exchange of conductors and workers (default: pieceworks)",
    )


def metrics_options(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port`` and ``--metrics-addr`` of a long-running process (Prometheus)."""
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve Prometheus metrics on PORT (0: a free one, printed)",
    )
    parser.add_argument(
        "--metrics-addr", default="127.0.0.1", metavar="ADDR", help="address for --metrics-port"
    )
