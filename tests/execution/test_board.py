"""`LeasedRedisJobBoard`: a conductor restarted under its old name resumes its dead run's job.

A conductor runs under a fixed ``--name`` (a service manager restarts it
the same way after a crash). TaskFlow's claim script renews a claim held
under the claimer's own name and reports "already claimed"; so every poll
of the restarted conductor kept its killed predecessor's claim alive, and
the job stayed CLAIMED by a dead process for good. Real Redis, PostgreSQL
and conductor processes; fails (never skips) without them.
"""

from __future__ import annotations

from pathlib import Path

from pieceworks.execution import atom_states, wait_for
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    Board,
    atom_runs,
    events,
    make_volume,
    slow_config,
)


def test_a_conductor_restarted_under_its_name_resumes_the_job_its_killed_run_held(
    board: Board, tmp_path: Path
) -> None:
    make_volume(tmp_path / "volumes", "vol-1", 64)
    config = slow_config(board, tmp_path)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    first, ev_first = board.conductor(
        "conductor-1",
        "--claim-expiry",
        "2",
        config=config,
        env={"PIECEWORKS_FAILPOINTS": "backup.chunk-stored=kill@8"},
    )
    assert first.wait(timeout=60) != 0, board.log("conductor-1")
    assert atom_states(PERSISTENCE, job)[f"{job.name}.transfer-chunks"] == "RUNNING"

    # The same --name; a second --events (the last one counts) keeps the two runs apart.
    again, _ = board.conductor(
        "conductor-1",
        "--claim-expiry",
        "2",
        "--max-dispatches",
        "1",
        "--events",
        str(tmp_path / "again.jsonl"),
        config=config,
    )
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert again.wait(timeout=20) == 0, board.log("conductor-1")
    assert result["chunks_total"] == 56
    resumed = tmp_path / "again.jsonl"
    assert [e["event"] for e in events(resumed) if e["event"] != "atom"] == [
        "claimed",
        "consumed",
    ]
    assert atom_runs(resumed, "take-lease") == 0  # resumed, not restarted
    assert atom_runs(ev_first, "take-lease", "SUCCESS") == 1
