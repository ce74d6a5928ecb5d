"""Verify jobs: posted (API and ``jobs post verify``), run by a conductor, read like the others.

A verify job checks every chunk of a backup in the store (no backend). Its
result is the verification's; a damaged chunk fails the job with
`CorruptionError` naming the chunk's volume offset, and `jobs watch` exits
1 (``job-failed``) while `jobs show` gives the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pieceworks.common_algorithms.jobs import verify_request
from pieceworks.execution import JobFailed, post_verify, wait_for
from pieceworks.protocols import ConfigError
from tests.execution.support import CHUNK, PERSISTENCE, Board, events, make_volume
from tests.execution.test_cli_jobs import jobs_config, posted, pw, pw_json


def test_a_verify_request_is_a_backup_id_and_whether_to_quarantine() -> None:
    assert verify_request({"backup_id": "bk-0123456789abcdef"}).quarantine is True
    with pytest.raises(ConfigError, match="unknown verify request field"):
        verify_request({"backup_id": "bk-0123456789abcdef", "volume_id": "v"}, strict=True)
    with pytest.raises(ConfigError, match="quarantine"):
        verify_request({"backup_id": "bk-0123456789abcdef", "quarantine": "yes"})


def test_a_conductor_runs_verify_jobs_and_a_damaged_chunk_fails_one(
    board: Board, tmp_path: Path
) -> None:
    make_volume(tmp_path / "volumes", "vol-1", 8)
    config = jobs_config(board, tmp_path)
    proc, ev = board.conductor("c1", "--max-dispatches", "4", config=config)
    backup = wait_for(
        board.url,
        PERSISTENCE,
        board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK),
        timeout=60,
    )
    backup_id = backup["backup_id"]

    job = post_verify(board.url, PERSISTENCE, "lab", {"backup_id": backup_id})
    board.jobs.append(job)
    assert job.name == f"verify-{backup_id}"
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert result["ok"] is True and result["problems"] == []
    assert result["chunks_checked"] == 7  # one of 8 blocks is a hole
    assert result["backup_id"] == backup_id and result["store"] == "lab"

    cli_job = posted(board, config, "verify", backup_id)  # jobs post verify
    assert pw(board, config, "jobs", "watch", cli_job.job_uuid, "--timeout", "60").returncode == 0
    shown = pw_json(board, config, "jobs", "show", cli_job.job_uuid)
    assert shown["state"] == "SUCCESS" and shown["result"]["ok"] is True
    assert "ok=True" in pw(board, config, "jobs", "show", cli_job.job_uuid).stdout

    chunk = next(p for p in (tmp_path / "store" / "chunks").rglob("*") if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    bad = posted(board, config, "verify", backup_id)
    watched = pw(board, config, "jobs", "watch", bad.job_uuid, "--timeout", "60", "--json")
    assert watched.returncode == 1, watched.stderr
    assert '"reference":"job-failed"' in watched.stderr.replace(" ", "")
    shown = pw_json(board, config, "jobs", "show", bad.job_uuid)
    assert shown["state"] == "REVERTED"  # failed, its steps reverted (as a failed restore)
    (error,) = shown["errors"]
    assert error.startswith(f"verify-{backup_id}.verdict: CorruptionError: backup {backup_id}:")
    assert "1 missing or damaged chunk(s): offset " in error
    with pytest.raises(JobFailed, match="CorruptionError"):
        wait_for(board.url, PERSISTENCE, bad, timeout=10)
    assert proc.wait(timeout=30) == 0
    consumed = [e["job_id"] for e in events(ev) if e["event"] == "consumed"]
    assert consumed[1:] == [job.job_uuid, cli_job.job_uuid, bad.job_uuid]
    assert list((tmp_path / "store" / "quarantine").rglob("*"))  # moved aside, as verify does
