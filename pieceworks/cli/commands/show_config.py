"""``pieceworks config``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse

from pieceworks.cli.context import Context
from pieceworks.cli.exit_codes import ExitCode

__all__ = ["run_config"]


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
