"""Conductors sharing one ``--name``: a restarted one resumes its dead run's job; two live ones
never run one job at once.

A conductor runs under a fixed ``--name`` (a service manager restarts it
the same way after a crash). TaskFlow's claim script renews a claim held
under the claimer's own name and reports "already claimed"; so every poll
of the restarted conductor kept its killed predecessor's claim alive, and
the job stayed CLAIMED by a dead process for good. Two live conductors with one
name took each other's claims for their own: one stalled past its claim's
expiry woke up, found "its" name on the claim the other had taken meanwhile,
and both ran the job. Real Redis, PostgreSQL
and conductor processes; fails (never skips) without them.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from pieceworks.execution import atom_states, wait_for
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    REDIS_HOST,
    REDIS_PORT,
    Board,
    atom_runs,
    events,
    make_volume,
    poll,
    slow_config,
    stored_chunks,
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
    assert "is registered by" not in board.log("conductor-1")  # no wait for its dead run
    assert result["chunks_total"] == 56
    resumed = tmp_path / "again.jsonl"
    assert [e["event"] for e in events(resumed) if e["event"] != "atom"] == [
        "claimed",
        "consumed",
    ]
    assert atom_runs(resumed, "take-lease") == 0  # resumed, not restarted
    assert atom_runs(ev_first, "take-lease", "SUCCESS") == 1


def test_two_live_conductors_with_one_name_never_run_one_job_twice(
    board: Board, tmp_path: Path
) -> None:
    """A stalls (SIGSTOP) mid-transfer past its claim's expiry; B, same --name, takes the job
    over; A wakes (SIGCONT), finishes the chunk it was storing, sees the claim is not its own
    and gives the job up: the manifest is written once, by B, and the job consumed once."""
    make_volume(tmp_path / "volumes", "vol-1", 128)
    store_dir = tmp_path / "store"
    config = slow_config(board, tmp_path)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    a, ev_a = board.conductor("twin", "--claim-expiry", "2", config=config, label="a")
    poll(
        "A to be mid-transfer",
        lambda: atom_runs(ev_a, "transfer-chunks") == 1 and stored_chunks(store_dir) >= 8,
        timeout=30,
    )
    a.send_signal(signal.SIGSTOP)
    try:
        b, ev_b = board.conductor("twin", "--claim-expiry", "2", config=config, label="b")
        poll(
            "B to claim the job once A's claim lapsed",
            lambda: any(e["event"] == "claimed" for e in events(ev_b)),
            timeout=30,
        )
    finally:
        a.send_signal(signal.SIGCONT)
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert result["chunks_total"] == 112
    time.sleep(1)  # A's last words, if any, reach its events file
    a_events = [e["event"] for e in events(ev_a) if e["event"] != "atom"]
    b_events = [e["event"] for e in events(ev_b) if e["event"] != "atom"]
    assert a_events == ["claimed", "lost"], board.log("a")
    assert b_events == ["claimed", "consumed"], board.log("b")
    assert atom_runs(ev_a, "write-manifest") == 0  # A ran nothing after it woke
    assert atom_runs(ev_a, "transfer-chunks", "SUCCESS") == 0  # nor recorded its transfer
    assert atom_runs(ev_b, "write-manifest", "SUCCESS") == 1
    a_claim, b_claim = (
        next(e for e in events(path) if e["event"] == "claimed") for path in (ev_a, ev_b)
    )
    assert a_claim["conductor"] == b_claim["conductor"] == "twin"
    assert a_claim["owner"] != b_claim["owner"]
    assert f"pid {a.pid}" in a_claim["owner"] and f"pid {b.pid}" in b_claim["owner"]
    # A found its name taken while it was stopped: it stops too, exit 2, saying so.
    assert a.wait(timeout=20) == 2, board.log("a")
    assert "conductor name 'twin' was taken by 'twin (host" in board.log("a")
    assert f"pid {b.pid}" in board.log("a")
    assert b.poll() is None, board.log("b")
    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=20) == 0, board.log("b")


def test_a_second_live_conductor_under_a_name_in_use_refuses_to_start(
    board: Board, tmp_path: Path
) -> None:
    """B, started under A's --name while A runs, exits 2 naming A; A runs on and still runs
    jobs; after A stops (SIGTERM), its name is free at once."""
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = slow_config(board, tmp_path, delay="0")
    a, ev_a = board.conductor("one", "--claim-expiry", "3", config=config, label="a")
    poll("A to start", lambda: "conductor one on" in board.log("a"), timeout=60)
    started = time.monotonic()
    b, ev_b = board.conductor("one", "--claim-expiry", "3", config=config, label="b")
    assert b.wait(timeout=30) == 2, board.log("b")
    assert time.monotonic() - started < 15
    text = board.log("b")
    assert "conductor name 'one' is in use by a live conductor 'one (host" in text, text
    assert f"pid {a.pid}" in text and "two conductors must not share a --name" in text, text
    assert "Traceback" not in text, text
    assert not events(ev_b)  # claimed nothing

    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert [e["event"] for e in events(ev_a) if e["event"] != "atom"] == ["claimed", "consumed"]
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=20) == 0, board.log("a")

    again, _ = board.conductor("one", "--max-dispatches", "0", config=config, label="again")
    assert again.wait(timeout=30) == 0, board.log("again")
    assert "is registered by" not in board.log("again")  # A removed its record: no wait


def _register(board: Board, name: str, host: str, pid: int, expiry_ms: int) -> None:
    """A registration record for `name` as a conductor process would have left it."""
    now = time.time()
    record: dict[str, object] = {"owner": f"{name} (host {host}, pid {pid}, run 000000)"}
    record.update(name=name, host=host, pid=pid, started=now - 60, heartbeat=now)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    client.set(f"{board.namespace}:conductors.{name}", json.dumps(record), px=expiry_ms)
    client.close()


def test_a_dead_holder_of_the_name_is_taken_over_at_once_here_and_on_expiry_elsewhere(
    board: Board, tmp_path: Path
) -> None:
    """Left by a process of this host that is gone: taken over at once. Left by one on
    another host that no longer renews it: taken once it lapses (the conductor waits)."""
    config = slow_config(board, tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _register(board, "here", socket.gethostname(), gone.pid, 60_000)
    started = time.monotonic()
    here, _ = board.conductor("here", "--max-dispatches", "0", config=config)
    assert here.wait(timeout=60) == 0, board.log("here")
    assert f"took it over from 'here (host {socket.gethostname()}, pid {gone.pid}" in board.log(
        "here"
    )
    assert time.monotonic() - started < 30  # not the record's 60 s

    _register(board, "there", "another-host.example", 4242, 3_000)
    there, _ = board.conductor("there", "--max-dispatches", "0", config=config)
    assert there.wait(timeout=60) == 0, board.log("there")
    text = board.log("there")
    assert "conductor name 'there' is registered by 'there (host another-host.example" in text
    assert "in use" not in text, text
