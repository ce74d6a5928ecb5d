"""``pieceworks config``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser

__all__ = ["add_arguments", "run_config"]


def add_arguments(parser: CommandParser) -> None:
    """``config`` has only the common options."""
    parser.describe(
        "Show which configuration file is used and every backend, store and engine\n"
        "setting, built-in defaults included. Secret options are shown as ***."
    )


def run_config(args: argparse.Namespace, ctx: Context) -> int:
    """Print where the configuration comes from and every backend, store and engine setting."""
    described = ctx.describe()
    ctx.out.data(described)
    lines = [
        f"configuration file: {described['config_file'] or 'none (built-in defaults)'}",
        f"home: {described['home']}",
    ]
    for kind in ("backends", "stores"):
        sections = described[kind]
        assert isinstance(sections, dict)
        for name, options in sections.items():
            lines.append(f"[{kind}.{name}]")
            lines += [f"  {k} = {v}" for k, v in options.items()]
    lines.append("[engine]")
    engine = described["engine"]
    assert isinstance(engine, dict)
    lines += [
        f"  {k} = {'none (flows run in memory)' if v is None else v}" for k, v in engine.items()
    ]
    ctx.out.result("\n".join(lines))
    return ExitCode.OK
