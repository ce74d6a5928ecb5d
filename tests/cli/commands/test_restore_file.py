"""``restore --to-file PATH`` with a PATH that names no file is refused before anything runs.

An empty PATH, or one ending in ``/`` (``newdir/``), restored the whole
backup into a temporary file, then failed renaming it onto the PATH: an
``unexpected-error`` (exit 1) after all that work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call
from tests.support.backups import make_backup


@pytest.mark.parametrize("path", ["", "  ", "newdir/"])
def test_a_path_that_names_no_file_is_a_usage_error(
    call: Call, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    backup_id = make_backup(home, "vol-1").backup_id
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = call("restore", backup_id, "--to-file", path, "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error" and "--to-file" in error["message"], error
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_path_in_a_missing_directory_is_a_usage_error_naming_it(
    call: Call, home: Path, tmp_path: Path
) -> None:
    """``--to-file /nodir/x.img`` exited 1 (``failed``) where a directory exits 2: both are
    a PATH that cannot be a file to restore to, so both are usage errors."""
    backup_id = make_backup(home, "vol-1").backup_id
    target = tmp_path / "nodir" / "x.img"
    done = call("restore", backup_id, "--to-file", str(target), "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert f"directory {target.parent} does not exist" in error["message"], error
    assert not target.parent.exists()
