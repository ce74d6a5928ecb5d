"""``pieceworks plan`` refuses output options that contradict each other or name no file.

``plan backup --format dot --json`` printed JSON and dropped the dot the
user asked for; ``plan backup -o ""`` wrote to standard output as if ``-o``
had not been given. Both are usage errors now, before anything is planned.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
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


def test_a_full_disk_leaves_no_cut_plan_and_keeps_the_old_one(
    run: Run, home: Path, tmp_path: Path
) -> None:
    """``-o`` on a full file system left an empty file (a new plan) or emptied the old one
    (the file was truncated before the write failed); now the plan appears whole or not
    at all."""
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "vol-1").write_bytes(b"x" * 4096)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        old = small / "old.dot"
        old.write_text("the old plan\n")
        old.chmod(0o600)
        # Fill the rest of the file system (the close flushes what the buffer held).
        with contextlib.suppress(OSError), open(small / "fill", "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
        for target in (small / "new.dot", old):
            done = run("plan", "backup", "--volume", "vol-1", "--format", "dot", "-o", str(target))
            assert done.code == ExitCode.FAILED, done
            assert f"cannot write the plan to {target}: No space left on device" in done.err
        assert sorted(p.name for p in small.iterdir()) == ["fill", "old.dot"]
        assert old.read_text() == "the old plan\n"
        (small / "fill").unlink()
        done = run("plan", "backup", "--volume", "vol-1", "--format", "dot", "-o", str(old))
        assert done.code == ExitCode.OK, done
        assert old.read_text().startswith("digraph") and old.stat().st_mode & 0o777 == 0o600
        link = tmp_path / "link.dot"
        link.symlink_to(old)
        done = run("plan", "backup", "--volume", "vol-1", "--json", "-o", str(link))
        assert done.code == ExitCode.OK, done
        assert link.is_symlink() and json.loads(old.read_text())["operation"] == "backup"
    finally:
        subprocess.run(["umount", str(small)], check=False)
