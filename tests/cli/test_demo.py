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
