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
from tests.cli.conftest import Call, Run


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


@pytest.mark.parametrize("where", ["missing-directory", "a-directory", "parent-is-a-file"])
def test_an_output_path_that_cannot_be_a_file_is_a_usage_error(
    run: Run, home: Path, tmp_path: Path, where: str
) -> None:
    """``-o`` into a missing directory or onto a directory exited 1 (``failed``), where
    ``restore --to-file`` into one exits 2: both are arguments naming no file to write."""
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "vol-1").write_bytes(b"x" * 4096)
    (tmp_path / "plain").write_text("x")
    path = {
        "missing-directory": tmp_path / "no" / "plan.dot",
        "a-directory": tmp_path,
        "parent-is-a-file": tmp_path / "plain" / "plan.dot",
    }[where]
    done = run("plan", "backup", "--volume", "vol-1", "--format", "dot", "-o", str(path))
    assert done.code == ExitCode.USAGE, done
    assert f"pieceworks: error: cannot write the plan to {path}: " in done.err, done


def test_a_full_disk_while_writing_the_plan_is_a_failure(run: Run, home: Path) -> None:
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "vol-1").write_bytes(b"x" * 4096)
    done = run("plan", "backup", "--volume", "vol-1", "-o", "/dev/full")
    assert done.code == ExitCode.FAILED, done
    assert "cannot write the plan to /dev/full: No space left on device" in done.err, done
