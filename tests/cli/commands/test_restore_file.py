"""``restore --to-file PATH`` with a PATH that names no file is refused before anything runs.

An empty PATH, or one ending in ``/`` (``newdir/``), restored the whole
backup into a temporary file, then failed renaming it onto the PATH: an
``unexpected-error`` (exit 1) after all that work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, Run, RunAll, without_dac_override
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


def _journals(home: Path) -> list[str]:
    journal = home / "journal"
    return sorted(p.name for p in journal.iterdir()) if journal.is_dir() else []


def test_a_name_near_the_file_system_limit_is_restored(
    run: Run, home: Path, tmp_path: Path
) -> None:
    """A valid 250-byte name failed: its temporary (``.<name>.pw-restore-<hex>``) was
    longer than 255 bytes, and the restore ended in an unexpected ``OSError`` (exit 1)."""
    backup_id = make_backup(home, "vol-1").backup_id
    for name in ("b" * 250, "é" * 127):  # 250 and 254 bytes
        target = tmp_path / name
        done = run("restore", backup_id, "--to-file", str(target))
        assert done.code == ExitCode.OK, done
        assert target.read_bytes() == (home / "volumes" / "vol-1").read_bytes()
        target.unlink()
    assert not [p for p in tmp_path.iterdir() if ".pw-restore-" in p.name]
    assert _journals(home) == []


def _unwritable_directory(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        directory = tmp_path / "read-only"
        directory.mkdir()
        directory.chmod(0o500)
        return directory
    if not os.path.isdir("/sys/kernel"):  # root writes anywhere but in sysfs
        pytest.skip("no directory root cannot write to")
    return Path("/sys/kernel")


@pytest.mark.parametrize("case", ["name-too-long", "parent-is-a-file", "unwritable-directory"])
def test_a_file_that_cannot_be_made_is_a_usage_error_and_leaves_nothing(
    run: Run, home: Path, tmp_path: Path, case: str
) -> None:
    """Each was an ``unexpected-error`` (exit 1) with a Python message, and the run's
    journal entry for its temporary file stayed behind for ``recover`` to report."""
    backup_id = make_backup(home, "vol-1").backup_id
    (tmp_path / "plain").write_bytes(b"x")
    target = {
        "name-too-long": tmp_path / ("c" * 300),
        "parent-is-a-file": tmp_path / "plain" / "x.img",
        "unwritable-directory": _unwritable_directory(tmp_path) / "x.img",
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    done = run("restore", backup_id, "--to-file", str(target), "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert error["message"].startswith(f"cannot restore to {target}: "), error
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert _journals(home) == []


def test_a_dangling_symbolic_link_is_refused_and_kept(
    call: Call, home: Path, tmp_path: Path
) -> None:
    """A link to nothing was taken for a new path: the restore replaced the link itself
    with a file, without --overwrite."""
    backup_id = make_backup(home, "vol-1").backup_id
    link = tmp_path / "image"
    link.symlink_to(tmp_path / "nowhere")
    for extra in ([], ["--overwrite"]):
        done = call("restore", backup_id, "--to-file", str(link), *extra, "--json")
        assert done.code == ExitCode.USAGE, done
        error = json.loads(done.err.strip().splitlines()[-1])
        assert "symbolic link" in error["message"] and "does not exist" in error["message"]
        assert link.is_symlink() and os.readlink(link) == str(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_overwrite_through_a_symbolic_link_replaces_the_file_it_names(
    run: Run, home: Path, tmp_path: Path
) -> None:
    """``--overwrite`` on a link to a file replaced the link with a new file (the file
    it named kept its old content), where a link to a block device was written through:
    a link is now followed for both, as ``cp`` follows it."""
    made = make_backup(home, "vol-1", seed=3)
    image = tmp_path / "image.raw"
    image.write_bytes(b"old content")
    link = tmp_path / "current"
    link.symlink_to(image)
    refused = run("restore", made.backup_id, "--to-file", str(link))
    assert refused.code == ExitCode.USAGE and "exists (file)" in refused.err, refused
    done = run("restore", made.backup_id, "--to-file", str(link), "--overwrite")
    assert done.code == ExitCode.OK, done
    assert link.is_symlink() and os.readlink(link) == str(image)
    assert image.read_bytes() == (home / "volumes" / "vol-1").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if ".pw-restore-" in p.name) == []


def test_two_restores_to_one_new_file_never_replace_each_other(
    run_all: RunAll, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """Both saw no file at the start and both renamed onto it: the second silently
    replaced the first's file (without --overwrite). The second to finish now exits 2."""
    first = make_backup(home, "vol-1", seed=4)
    second = make_backup(home, "vol-2", seed=5)
    target = tmp_path / "new.img"
    slow = {**env, "PIECEWORKS_FAILPOINTS": "restore.chunk-written=sleep:500"}
    results = run_all(
        [
            (["restore", first.backup_id, "--to-file", str(target), "--json"], slow),
            (["restore", second.backup_id, "--to-file", str(target), "--json"], slow),
        ]
    )
    codes = sorted(r.code for r in results)
    assert codes == [ExitCode.OK, ExitCode.USAGE], results
    winner = next(r for r in results if r.code == ExitCode.OK)
    loser = next(r for r in results if r.code == ExitCode.USAGE)
    assert "was not replaced" in loser.err, loser
    volume = "vol-1" if winner.json()["backup_id"] == first.backup_id else "vol-2"
    assert target.read_bytes() == (home / "volumes" / volume).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if ".pw-restore-" in p.name) == []
    assert _journals(home) == []


def test_a_journal_that_cannot_be_written_is_named_not_the_target_directory(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """With ``$PIECEWORKS_HOME/journal`` not writable the restore said "cannot create a
    file of N bytes in <PATH's directory>: Permission denied", blaming a directory that
    was writable (exit 2)."""
    backup_id = make_backup(home, "vol-1").backup_id
    journal = home / "journal"
    journal.mkdir()
    journal.chmod(0o500)
    target = tmp_path / "out" / "image"
    target.parent.mkdir()
    try:
        done = without_dac_override(
            ["restore", backup_id, "--to-file", str(target), "--json"], env, tmp_path
        )
    finally:
        journal.chmod(0o700)
    assert done.code == ExitCode.FAILED, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert f"cannot write the run journal in {journal}: " in error["message"], error
    assert "Permission denied" in error["message"], error
    assert list(target.parent.iterdir()) == []


def test_a_journal_that_cannot_be_updated_after_the_commit_does_not_fail_the_restore(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """The journal's update after the rename failed the restore: exit 1, and "PATH was not
    created or changed" while PATH had just been written whole."""
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    from tests.cli.conftest import COMMAND, no_dac_override  # noqa: PLC0415

    made = make_backup(home, "vol-1", seed=7)
    target = tmp_path / "image"
    journal = home / "journal"
    slow = {**env, "PIECEWORKS_FAILPOINTS": "restore.chunk-written=sleep:1500"}
    proc = subprocess.Popen(
        [*no_dac_override(), *COMMAND, "restore", made.backup_id, "--to-file", str(target)],
        env=slow,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not list(journal.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        journal.chmod(0o500)  # recorded; its update after the commit fails
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        journal.chmod(0o700)
    assert proc.returncode == ExitCode.OK, (out, err)
    assert target.read_bytes() == (home / "volumes" / "vol-1").read_bytes()
    assert "cannot update the run journal" in err, err
