"""``pieceworks plan`` refuses output options that contradict each other or name no file.

``plan backup --format dot --json`` printed JSON and dropped the dot the
user asked for; ``plan backup -o ""`` wrote to standard output as if ``-o``
had not been given. Both are usage errors now, before anything is planned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call


@pytest.mark.parametrize("fmt", ["dot", "svg"])
def test_json_with_a_non_json_format_is_a_usage_error(call: Call, home: Path, fmt: str) -> None:
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "vol-1").write_bytes(b"x" * 4096)
    done = call("plan", "backup", "--volume", "vol-1", "--format", fmt, "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["message_type"] == "exit_error" and f"--format {fmt}" in error["message"]
    assert done.out == ""


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_output_file_name_is_a_usage_error(call: Call, name: str) -> None:
    done = call("plan", "backup", "--volume", "vol-1", "-o", name)
    assert done.code == ExitCode.USAGE, done
    assert "empty file name" in done.err and done.out == ""
