"""The top-level parser: ``--version`` under ``--json``, and unknown options.

``pieceworks --version --json`` printed ``pieceworks 0.1.0``, which a script
reading stdout as JSON fails on; an unknown option after a command was
reported with the top-level usage, which lists none of the command's options.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.main import main
from tests.cli.conftest import Call


@pytest.mark.parametrize("args", [["--version", "--json"], ["--json", "--version"]])
def test_version_under_json_is_a_json_document(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with contextlib.suppress(SystemExit):
        assert main(args, env={}) in (0, None)
    doc = json.loads(capsys.readouterr().out)
    assert doc["message_type"] == "version" and doc["version"], doc


def test_version_without_json_stays_text(capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.suppress(SystemExit):
        main(["--version"], env={})
    assert capsys.readouterr().out.startswith("pieceworks ")


@pytest.mark.parametrize(
    "argv",
    [
        ["backup", "--volume", "v", "--bogus"],
        ["jobs", "post", "backup", "--volume", "v", "--bogus"],
        ["list", "--bogus", "extra"],
    ],
)
def test_an_unknown_option_is_reported_with_the_command_s_usage(
    call: Call, argv: list[str]
) -> None:
    """``backup --bogus`` printed the top-level usage (``pieceworks [-h] ... COMMAND``),
    which lists no option of ``backup``; the command's own usage is shown now."""
    done = call(*argv)
    assert done.code == ExitCode.USAGE, done
    prog = "pieceworks " + " ".join(a for a in argv if a not in ("--volume", "v", "--bogus"))
    prog = prog.removesuffix(" extra")
    assert f"usage: {prog}" in done.err, done.err
    assert f"{prog}: error: unrecognized arguments: --bogus" in done.err, done.err
    assert "COMMAND ..." not in done.err  # not the top-level usage
