"""``pieceworks demo``: the whole job on embedded defaults, from a bare environment."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Run


def test_demo_runs_the_whole_job_and_checks_the_restored_volume(
    run: Run, bare_env: dict[str, str], tmp_path: Path
) -> None:
    """No configuration, nothing prepared: the demo plans, backs up in use, changes the
    volume, backs up incrementally, restores, verifies and prints a summary whose sha256
    check passes; its directory then works as a PIECEWORKS_HOME."""
    where = tmp_path / "demo"
    done = run("demo", "--dir", str(where), "--size", "64MiB", env=bare_env)
    assert done.code == 0, done
    out = done.out
    assert "-> snapshot-stream: a temporary snapshot is streamed" in out
    summary = out.split("summary:", 1)[1].splitlines()
    assert summary[1].split()[:2] == ["step", "strategy"]
    rows = {" ".join(line.split()[:2]): line.split() for line in summary[2:6]}
    assert rows["full backup"][2] == "snapshot-stream"
    assert rows["incremental backup"][2] == "snapshot-stream"
    assert rows["restore stream-in"][2] == "64.0"
    full_stored = float(rows["full backup"][7])
    incremental_stored = float(rows["incremental backup"][7])
    assert rows["incremental backup"][8] == "MiB" and incremental_stored <= 4.0
    assert full_stored > 5 * incremental_stored
    assert "equals the changed volume's" in out
    assert not (where / "pieceworks.db").exists()  # flows run without persistence

    listed = run("list", "--json", env={**bare_env, "PIECEWORKS_HOME": str(where)})
    backups = listed.json()
    assert len(backups) == 2 and backups[1]["parent"] == backups[0]["backup_id"]


def test_a_demo_larger_than_the_disk_is_refused_before_writing(run: Run, tmp_path: Path) -> None:
    """``demo --size 1TiB`` started writing a terabyte into /tmp (10 GB in a minute here),
    and a demo stopped by SIGTERM leaves its directory: now refused, nothing made."""
    target = tmp_path / "demo"
    done = run("demo", "--size", "1PiB", "--dir", str(target))
    assert done.code == 2, done
    assert f"--size 1.0 PiB needs about 3.0 PiB free in {target}" in done.err, done
    assert not target.exists()


def test_a_demo_dir_that_cannot_be_a_directory_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    """``--dir FILE`` was an unexpected NotADirectoryError (exit 1); ``--dir ""`` ran in a
    temporary directory and removed it, as if no --dir had been given."""
    (tmp_path / "plain").write_text("x")
    done = run("demo", "--dir", str(tmp_path / "plain"), "--size", "4MiB")
    assert done.code == 2, done
    assert f"--dir {tmp_path / 'plain'}: exists and is not a directory" in done.err, done
    blank = run("demo", "--dir", " ", "--size", "4MiB")
    assert blank.code == 2 and "--dir must not be empty or blank" in blank.err, blank
