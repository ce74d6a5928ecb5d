"""``pieceworks jobs post|list|show|watch|cancel|migrate`` and ``[jobs]``, as a user runs them.

Real processes against the real Redis and PostgreSQL: the command line
reads the jobboard and persistence from the configuration's ``[jobs]``
section, so no URL is typed after the first line of the file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pieceworks.execution import JobFailed, PostedJob, wait_for
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    REPO,
    Board,
    atom_runs,
    make_volume,
    poll,
    spec,
)


def jobs_config(board: Board, tmp_path: Path, *, delay: str = "0", extra: str = "") -> Path:
    """Backend and store ``lab`` plus a ``[jobs]`` section naming this test's board."""
    config = board.config(
        "host",
        backends={"lab": spec("lab", "slowfile", path=str(tmp_path / "volumes"), delay=delay)},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    jobs = f'\n[jobs]\njobboard = "{board.url}"\npersistence = "{PERSISTENCE}"\n{extra}'
    config.write_text(config.read_text() + jobs)
    return config


def pw(board: Board, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pieceworks.cli", "--config", str(config), *args],
        cwd=REPO,
        env=board.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pw_json(board: Board, config: Path, *args: str) -> Any:
    done = pw(board, config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def posted(board: Board, config: Path, *args: str) -> PostedJob:
    """Post with the command; return the job as the Python API knows it (for waiting)."""
    doc = pw_json(board, config, "jobs", "post", *args)
    status = pw_json(board, config, "jobs", "show", doc["job_id"])
    job = PostedJob(
        doc["job_id"], status["name"], doc["book_id"], doc["flow_id"], doc["result_atom"]
    )
    board.jobs.append(job)
    return job


def test_post_list_show_watch_a_backup_from_the_command_line(board: Board, tmp_path: Path) -> None:
    """migrate, post (--priority, --json), list, show, watch until SUCCESS; all from [jobs]."""
    make_volume(tmp_path / "volumes", "vol-1", 6)
    config = jobs_config(board, tmp_path)
    assert pw(board, config, "jobs", "migrate").returncode == 0

    job = posted(board, config, "backup", "--volume", "vol-1", "--chunk-size", "64KiB",
                 "--priority", "high")  # fmt: skip
    listed = pw_json(board, config, "jobs", "list")["jobs"]
    assert [(j["job_id"], j["state"]) for j in listed] == [(job.job_uuid, "UNCLAIMED")]
    assert [j["message_type"] for j in listed] == ["job"]  # rows name their kind, as list's do
    assert pw_json(board, config, "jobs", "list", "--state", "SUCCESS")["jobs"] == []

    board.conductor("conductor-1", "--max-dispatches", "1", config=config)
    watched = pw(board, config, "jobs", "watch", job.job_uuid, "--timeout", "60")
    assert watched.returncode == 0, watched.stderr
    assert f"job {job.job_uuid}: SUCCESS" in watched.stdout

    shown = pw_json(board, config, "jobs", "show", job.job_uuid)
    assert shown["state"] == "SUCCESS" and shown["errors"] == []
    assert shown["result"]["volume_id"] == "vol-1"
    assert set(shown["atoms"].values()) == {"SUCCESS"}
    assert shown["finished"] is not None and shown["posted"] <= shown["finished"]
    text = pw(board, config, "jobs", "show", job.job_uuid).stdout
    assert f"job {job.job_uuid} ({job.name}): SUCCESS" in text


def test_a_posted_backup_carries_the_guard_sample_of_the_poster(
    board: Board, tmp_path: Path
) -> None:
    """``[backup] guard_sample`` and ``guard_max_chunks`` of the posting host reach the
    conductor's backup."""
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = jobs_config(board, tmp_path)
    config.write_text(config.read_text() + "\n[backup]\nguard_sample = 100\nguard_max_chunks = 2\n")
    assert pw(board, config, "jobs", "migrate").returncode == 0
    job = posted(board, config, "backup", "--volume", "vol-1", "--chunk-size", "64KiB")
    board.conductor("conductor-1", "--max-dispatches", "1", config=config)
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert result["guard"]["sample_percent"] == 100.0 and result["guard"]["lies"] == []
    assert result["guard"]["max_chunks"] == 2 and result["guard"]["chunks_checked"] <= 2


def test_unknown_jobs_and_missing_locations_are_clear_errors(board: Board, tmp_path: Path) -> None:
    """show/watch of an unknown id: exit 3 naming it; no [jobs] jobboard: exit 2 naming it."""
    config = jobs_config(board, tmp_path)
    for action in ("show", "watch"):
        done = pw(board, config, "jobs", action, "no-such-job")
        assert done.returncode == 3
        assert "no job 'no-such-job'" in done.stderr
    bad_name = pw(board, config, "jobs", "post", "backup", "--backend", "no/such", "--volume", "v")
    assert bad_name.returncode == 2
    assert "backend name" in bad_name.stderr
    bare = board.config("bare", stores={"lab": spec("lab", "posix", path=str(tmp_path / "s"))})
    done = pw(board, bare, "jobs", "post", "backup", "--volume", "vol-1")
    assert done.returncode == 2
    assert "no jobboard: give --jobboard redis://... or set [jobs] jobboard" in done.stderr
    bad = board.config("bad")
    bad.write_text('[jobs]\njobboard = "redis://x/y"\nkeep_finished = -1\n')
    done = pw(board, bad, "jobs", "list")
    assert done.returncode == 2
    assert "[jobs]: keep_finished must be a positive finite number of seconds" in done.stderr


def test_cancel_a_waiting_job_and_a_running_one(board: Board, tmp_path: Path) -> None:
    """A waiting job ends REVERTED at once; a running one starts no further step and reverts."""
    make_volume(tmp_path / "volumes", "vol-1", 320)
    config = jobs_config(board, tmp_path, delay="0.05")
    waiting = posted(board, config, "backup", "--volume", "vol-1", "--chunk-size", "64KiB")
    assert pw_json(board, config, "jobs", "cancel", waiting.job_uuid)["cancelled"] == "cancelled"
    shown = pw_json(board, config, "jobs", "show", waiting.job_uuid)
    assert shown["state"] == "REVERTED"
    assert any("cancelled" in e for e in shown["errors"])
    assert pw(board, config, "jobs", "watch", waiting.job_uuid).returncode == 1

    running = posted(board, config, "backup", "--volume", "vol-1", "--chunk-size", "64KiB")
    proc, ev = board.conductor("conductor-1", "--max-dispatches", "1", config=config)
    poll("the transfer to start", lambda: atom_runs(ev, "transfer-chunks") == 1, timeout=60)
    cancel = pw_json(board, config, "jobs", "cancel", running.job_uuid)
    assert cancel["cancelled"] == "requested"
    with pytest.raises(JobFailed, match="cancelled"):
        wait_for(board.url, PERSISTENCE, running, timeout=90)
    assert proc.wait(timeout=30) == 0, board.log("conductor-1")
    assert atom_runs(ev, "write-manifest") == 0
    assert not list((tmp_path / "store" / "manifests").glob("*.json"))
    assert not list((tmp_path / "store" / "leases").glob("*"))  # reverted: lease released


def test_finished_logbooks_are_removed_after_keep_finished(board: Board, tmp_path: Path) -> None:
    """With [jobs] keep_finished = 1, a conductor started later removes the finished logbook."""
    make_volume(tmp_path / "volumes", "vol-1", 2)
    config = jobs_config(board, tmp_path, extra="keep_finished = 1\n")
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    first, _ = board.conductor("conductor-1", "--max-dispatches", "1", config=config)
    wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert first.wait(timeout=30) == 0
    assert pw(board, config, "jobs", "show", job.job_uuid).returncode == 0
    time.sleep(1.5)
    second, _ = board.conductor("conductor-2", "--max-dispatches", "0", config=config)
    assert second.wait(timeout=60) == 0, board.log("conductor-2")
    gone = pw(board, config, "jobs", "show", job.job_uuid)
    assert gone.returncode == 3, gone.stdout
