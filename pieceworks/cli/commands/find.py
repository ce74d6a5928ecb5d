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

from pieceworks.cli.context import Context
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.output import table
from pieceworks.registry import Kind, Registration
from pieceworks.registry.attributes import attribute_text

__all__ = ["run_find"]


def _labels(reg: Registration) -> list[str]:
    return sorted(attribute_text(a) for a in reg.provides)


def run_find(args: argparse.Namespace, ctx: Context) -> int:
    """Search the registry of the configured backends."""
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
    ctx.out.data([r.describe().to_dict() for r in found])
    ctx.out.result(
        table(
            ["name", "kind", "backend", "attributes"],
            [[r.name, r.kind.value, r.backend or "-", ", ".join(_labels(r))] for r in found],
        )
    )
    return ExitCode.OK
