"""``pieceworks --version --json`` prints JSON, as every command under ``--json`` does.

It printed ``pieceworks 0.1.0``, which a script reading stdout as JSON fails on.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from pieceworks.cli.main import main


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
