"""``pieceworks find ATTR...``: the founding idea, a registry search from the shell.

Every configured backend is registered with `register_backend` (its
verified driver under its capabilities, and its backup, restore, verify
and delete flow factories under tags such as ``live-backup``); then the
registry is asked for what provides the attributes. A miss is `NoMatch`,
a `NotFound` whose message names the closest registrations and what each
lacks (and the closest known tags for a misspelled one).

``--json`` prints, per match, `Registration.describe()`: its build
parameters, the symbols the built piece requires from and provides to the
engine's store, and a one-line summary.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.options import KINDS
from pieceworks.cli.output import table

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.registry import Registration

__all__ = ["add_arguments", "run_find"]

DESCRIPTION = """\
Register every configured backend (its driver and its flows) and search by
attribute: a capability as capability:NAME (capability:snapshot,
capability:stream-out, ...) or a tag (live-backup, fast-backup, slow-backup,
incremental-backup, sparse-backup, offload-restore, stream-restore, backup,
restore, verify, delete). A match provides every ATTR, at least one --any
and no --none. --backend NAME keeps only that backend's registrations;
--buildable leaves drivers out. No match: exit 3 with the registry's
explanation (the closest registrations, what each lacks).
--json prints each match's description: build parameters, the symbols it
requires and provides, a summary.

example: pieceworks find --any fast-backup live-backup --none slow-backup"""


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``find``: attributes required, any of, none of."""
    parser.describe(DESCRIPTION, (ExitCode.NOT_FOUND,))
    parser.add_argument(
        "attributes", metavar="ATTR", nargs="*", type=_attribute, help="attributes all required"
    )
    parser.add_argument(
        "--any",
        dest="any_of",
        metavar="ATTR",
        nargs="+",
        action="extend",
        type=_attribute,
        help="one of these",
    )
    parser.add_argument(
        "--none",
        dest="none_of",
        metavar="ATTR",
        nargs="+",
        action="extend",
        type=_attribute,
        help="none of these",
    )
    parser.add_argument("--kind", choices=KINDS, help="only registrations of this kind")
    parser.add_argument(
        "--buildable", action="store_true", help="only pieces that build a task or flow"
    )


def _attribute(text: str) -> str:
    """An ATTR: empty or blank is a usage error (it was an unexpected TypeError, exit 1)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an attribute must not be empty or blank")
    return text


def _labels(reg: Registration) -> list[str]:
    from pieceworks.registry.attributes import attribute_text  # noqa: PLC0415

    return sorted(attribute_text(a) for a in reg.provides)


def run_find(args: argparse.Namespace, ctx: Context) -> int:
    """Search the registry of the configured backends."""
    from pieceworks.registry import Kind  # noqa: PLC0415

    if not (args.attributes or args.any_of or args.kind or args.backend):
        raise CliError(
            "find needs at least one ATTR, --any ATTR, --kind or --backend", ExitCode.USAGE
        )
    if args.backend is not None:
        ctx.config.backend(args.backend)  # an unknown name is an error, not an empty result
    registry = ctx.registry()
    found = registry.find(
        args.attributes,
        any_of=args.any_of or (),
        none_of=args.none_of or (),
        kind=Kind(args.kind) if args.kind else None,
        backend=args.backend,
        buildable=args.buildable,
    )
    ctx.out.data([r.describe().to_dict() for r in found], message_type="registration")
    ctx.out.result(
        table(
            ["name", "kind", "backend", "attributes"],
            [[r.name, r.kind.value, r.backend or "-", ", ".join(_labels(r))] for r in found],
        )
    )
    return ExitCode.OK
