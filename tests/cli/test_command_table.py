"""The command table (`pieceworks.cli.commands.COMMANDS`) and the lazy parser built from it.

``pieceworks --help`` reads only the table; a command's module is imported
when that command is parsed, and declares its own arguments; no help page
imports TaskFlow or another heavy library.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from pieceworks.cli.commands import COMMANDS
from pieceworks.cli.parser import build_parser
from tests.cli.test_startup import HEAVY

_PROBE = """
import contextlib, io, json, sys
from pieceworks.cli.commands import COMMANDS
from pieceworks.cli.main import main
codes, after_top = [], None
for argv in [[]] + [[name] for name in COMMANDS]:
    with contextlib.redirect_stdout(io.StringIO()):
        codes.append(main([*argv, "--help"]))
    if after_top is None:
        after_top = sorted(sys.modules)
print(json.dumps({"codes": codes, "top": after_top, "all": sorted(sys.modules)}))
"""


def test_help_pages_import_nothing_heavy_and_top_help_no_command(tmp_path: Path) -> None:
    """``--help``: no command module; every command's ``--help``: none of HEAVY."""
    env = {**os.environ, "HOME": str(tmp_path), "PIECEWORKS_HOME": str(tmp_path / "pw")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report["codes"]) == {0}, report["codes"]
    commands = [m for m in report["top"] if m.startswith("pieceworks.cli.commands.")]
    assert commands == [], f"pieceworks --help imported {commands}"
    loaded = {m.partition(".")[0] for m in report["all"]}
    assert not loaded & set(HEAVY), f"a help page imported {loaded & set(HEAVY)}"


def test_every_table_entry_declares_itself_and_runs_a_function_of_its_module() -> None:
    """Module, run function and argument declaration of each entry exist."""
    for name, info in COMMANDS.items():
        module = importlib.import_module(info.module_path)
        assert callable(getattr(module, info.function)), name
        assert callable(getattr(module, info.arguments)), name


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_the_lazy_parser_parses_as_the_eager_one() -> None:
    """The parser `main` uses (lazy) gives the same namespace as the full one."""
    cases = [
        ["--json", "backup", "--volume", "v", "--in-use", "--label", "a=b", "--chunk-size", "1M"],
        ["plan", "replicate", "--from-backend", "a", "--to-backend", "b", "--volume", "v"],
        ["jobs", "post", "restore", "b1", "--volume", "v", "--priority", "high"],
        ["key", "passwd", "--new-password-file", "f"],
        ["gc", "--dry-run"],
        ["target", "serve", "--dir", "d"],
        ["check-driver", "m:C", "--name", "x"],
        ["conductor", "--backends", "a,b", "--max-dispatches", "1"],
    ]
    for argv in cases:
        assert build_parser(lazy=True).parse_args(argv) == build_parser().parse_args(argv), argv


def test_the_table_is_the_order_and_the_summaries_of_the_help() -> None:
    """``pieceworks --help`` lists the table's commands, in order, with their summaries."""
    parser = build_parser(lazy=True)
    assert list(_subparsers(parser)) == [
        n for name, info in COMMANDS.items() for n in (name, *info.aliases)
    ]
    text = parser.format_help()
    for info in COMMANDS.values():
        assert " ".join(info.summary.split()[:4]) in " ".join(text.split()), info.summary
