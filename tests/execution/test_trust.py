"""Results a caller can trust: crashes, pauses, many threads, routing, failures and secrets.

Every test runs real ``pieceworks conductor`` processes against the real
Redis and PostgreSQL; crash points are armed with ``PIECEWORKS_FAILPOINTS``
in the conductor's environment only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy

from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import JobFailed, PostedJob, atom_states, wait_for
from pieceworks.execution.status import job_status
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    REPO,
    Board,
    atom_runs,
    events,
    make_volume,
    poll,
    slow_config,
    spec,
    stored_chunks,
)


def persisted_rows(job: PostedJob) -> str:
    """Every row TaskFlow keeps for `job` (logbook, flow detail, atoms), as one text."""
    engine = sqlalchemy.create_engine(PERSISTENCE)
    text = []
    with engine.connect() as conn:
        for table, key, value in (
            ("logbooks", "uuid", job.book_uuid),
            ("flowdetails", "parent_uuid", job.book_uuid),
            ("atomdetails", "parent_uuid", job.flow_uuid),
        ):
            rows = conn.execute(
                sqlalchemy.text(f"select * from {table} where {key} = :v"),
                {"v": value},
            )
            text += [repr(tuple(row)) for row in rows]
    engine.dispose()
    assert text, f"no rows persisted for job {job.job_uuid}"
    return "\n".join(text)


def flow_state(job: PostedJob) -> str | None:
    engine = sqlalchemy.create_engine(PERSISTENCE)
    with engine.connect() as conn:
        state = conn.execute(
            sqlalchemy.text("select state from flowdetails where uuid = :v"), {"v": job.flow_uuid}
        ).scalar()
    engine.dispose()
    return None if state is None else str(state)


def test_a_conductor_killed_after_the_manifest_is_written_ends_in_success(
    board: Board, tmp_path: Path
) -> None:
    """Killed at job.manifest-written: the next conductor re-writes the identical manifest: success.

    Before, the re-run write raised BackupExists, the flow reverted and the
    job was reported failed although the backup existed and verified.
    """
    make_volume(tmp_path / "volumes", "vol-1", 24)
    store_dir = tmp_path / "store"
    config = board.config(
        "host",
        backends={"lab": spec("lab", "file", path=str(tmp_path / "volumes"))},
        stores={"lab": spec("lab", "posix", path=str(store_dir))},
    )
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    backup_id = job.name.removeprefix("backup-")
    a, _ev_a = board.conductor(
        "conductor-a",
        "--claim-expiry",
        "2",
        config=config,
        env={"PIECEWORKS_FAILPOINTS": "job.manifest-written=kill"},
    )
    assert a.wait(timeout=60) == -signal.SIGKILL, board.log("conductor-a")
    manifest_key = store_dir / "manifests" / f"{backup_id}.json"
    written = manifest_key.read_bytes()  # durable before the crash
    assert atom_states(PERSISTENCE, job)[f"{job.name}.write-manifest"] == "RUNNING"

    b, ev_b = board.conductor(
        "conductor-b", "--claim-expiry", "2", "--max-dispatches", "1", config=config
    )
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert b.wait(timeout=30) == 0, board.log("conductor-b")
    assert result["backup_id"] == backup_id
    assert atom_runs(ev_b, "write-manifest", "SUCCESS") == 1
    assert atom_runs(ev_b, "transfer-chunks") == 0  # resumed, not redone
    assert manifest_key.read_bytes() == written  # the first write stands
    assert result["chunks_total"] == len(read_manifest(PosixStore(store_dir), backup_id).chunks)
    assert set(atom_states(PERSISTENCE, job).values()) == {"SUCCESS"}
    assert [e["event"] for e in events(ev_b) if e["event"] != "atom"] == ["claimed", "consumed"]


def test_a_paused_conductor_that_lost_its_claim_changes_nothing(
    board: Board, tmp_path: Path
) -> None:
    """SIGSTOP A past its claim expiry; B finishes; A wakes, starts no atom, writes nothing."""
    make_volume(tmp_path / "volumes", "vol-1", 96)
    store_dir = tmp_path / "store"
    config = slow_config(board, tmp_path)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    backup_id = job.name.removeprefix("backup-")
    a, ev_a = board.conductor(
        "conductor-a", "--claim-expiry", "2", "--max-dispatches", "1", config=config
    )
    poll(
        "conductor A to be mid-transfer",
        lambda: atom_runs(ev_a, "transfer-chunks") == 1 and stored_chunks(store_dir) >= 5,
        timeout=60,
    )
    a.send_signal(signal.SIGSTOP)
    try:
        b, _ev_b = board.conductor(
            "conductor-b", "--claim-expiry", "2", "--max-dispatches", "1", config=config
        )
        result = wait_for(board.url, PERSISTENCE, job, timeout=90)
        assert b.wait(timeout=30) == 0, board.log("conductor-b")
        reported = (
            flow_state(job),
            atom_states(PERSISTENCE, job),
            (store_dir / "manifests" / f"{backup_id}.json").read_bytes(),
        )
    finally:
        a.send_signal(signal.SIGCONT)
    assert a.wait(timeout=60) == 0, board.log("conductor-a")

    assert [e["event"] for e in events(ev_a) if e["event"] != "atom"] == ["claimed", "lost"]
    for step in ("write-manifest", "release-lease"):
        assert atom_runs(ev_a, step) == 0, f"A started {step} after losing its claim"
    assert reported == (
        flow_state(job),
        atom_states(PERSISTENCE, job),
        (store_dir / "manifests" / f"{backup_id}.json").read_bytes(),
    )
    assert reported[0] == "SUCCESS"
    assert job_status(board.url, PERSISTENCE, job.job_uuid).result == result


_THREADS = """
import json, sys, threading
from pieceworks.execution import post_backup, wait_for
url, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
out, lock = [], threading.Lock()
def one(i):
    try:
        job = post_backup(url, db, "lab", "lab", {"volume_id": "vol-1", "chunk_size": 65536})
        result = wait_for(url, db, job, timeout=240)
        entry = {"ok": True, "job": [job.job_uuid, job.name, job.book_uuid, job.flow_uuid,
                 job.result_atom], "backup_id": result["backup_id"]}
    except Exception as exc:
        entry = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with lock:
        out.append(entry)
threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"""


def test_twenty_threads_post_and_wait_in_one_process(board: Board, tmp_path: Path) -> None:
    """20 threads of one fresh process post and wait at once: all 20 succeed (migrations once)."""
    make_volume(tmp_path / "volumes", "vol-1", 2)
    config = board.config(
        "host",
        backends={"lab": spec("lab", "file", path=str(tmp_path / "volumes"))},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    for name in ("conductor-a", "conductor-b"):
        board.conductor(name, config=config)
    done = subprocess.run(
        [sys.executable, "-c", _THREADS, board.url, PERSISTENCE, "20"],
        cwd=REPO,
        env=board.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout)
    board.jobs += [PostedJob(*o["job"]) for o in outcomes if o["ok"]]
    errors = [o["error"] for o in outcomes if not o["ok"]]
    assert errors == []
    assert len({o["backup_id"] for o in outcomes}) == 20


def test_a_job_naming_a_driver_this_host_lacks_is_left_for_one_that_has_it(
    board: Board, tmp_path: Path
) -> None:
    """A lacks driver slowfile (and backend 'far'): it never claims those jobs; B runs them."""
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = slow_config(board, tmp_path, delay="0")
    far = board.config(
        "far",
        backends={"far": spec("far", "file", path=str(tmp_path / "volumes"))},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    no_plugins = {"PYTHONPATH": str(REPO)}  # the test drivers are not installed on A's host
    a, ev_a = board.conductor("conductor-a", config=config, env=no_plugins)
    slow_job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    far_job = board.post_backup("far", "lab", volume_id="vol-1", chunk_size=CHUNK)
    time.sleep(3)  # A polls the board every 0.2 s meanwhile
    assert a.poll() is None, board.log("conductor-a")
    assert [e for e in events(ev_a) if e["event"] != "atom"] == []
    for job in (slow_job, far_job):
        assert job_status(board.url, PERSISTENCE, job.job_uuid).state == "UNCLAIMED"

    b, _ = board.conductor("conductor-b", "--max-dispatches", "1", config=config)
    c, _ = board.conductor("conductor-c", "--max-dispatches", "1", config=far)
    assert wait_for(board.url, PERSISTENCE, slow_job, timeout=60)["volume_id"] == "vol-1"
    assert wait_for(board.url, PERSISTENCE, far_job, timeout=60)["volume_id"] == "vol-1"
    assert b.wait(timeout=30) == 0 and c.wait(timeout=30) == 0
    assert [e for e in events(ev_a) if e["event"] != "atom"] == []


def test_a_failed_job_says_why_by_id_and_no_secret_reaches_persistence(
    board: Board, tmp_path: Path
) -> None:
    """Options stay on the host, failure texts are masked: the PostgreSQL rows hold no secret."""
    secret = "hunter2-Xq9-s3cret"
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = board.config(
        "host",
        backends={
            "leaky": spec("leaky", "leakyfile", path=str(tmp_path / "volumes"), password=secret),
            "lab": spec("lab", "slowfile", path=str(tmp_path / "volumes"), delay="0"),
        },
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    # slowfile takes unknown options: this one must stay in the host's configuration
    text = config.read_text().replace('delay = "0"', f'delay = "0"\napi_key = "{secret}"')
    config.write_text(text)
    proc, _ev = board.conductor("conductor-1", "--max-dispatches", "2", config=config)
    failing = board.post_backup("leaky", "lab", volume_id="vol-1", chunk_size=CHUNK)
    working = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)

    with pytest.raises(JobFailed) as failed:
        wait_for(board.url, PERSISTENCE, failing, timeout=60)
    assert failing.job_uuid in str(failed.value)
    assert "cannot log in to the array with password=***" in str(failed.value)
    assert secret not in str(failed.value)
    wait_for(board.url, PERSISTENCE, working, timeout=60)
    assert proc.wait(timeout=30) == 0, board.log("conductor-1")

    status = job_status(board.url, PERSISTENCE, failing.job_uuid)
    assert status.state in ("FAILURE", "REVERTED")
    assert any("password=***" in e for e in status.errors)
    for job in (failing, working):
        rows = persisted_rows(job)
        assert secret not in rows
        assert "slowfile" not in rows and "leakyfile" not in rows  # no driver, no options
    assert secret not in board.log("conductor-1")
    assert os.environ.get("PIECEWORKS_FAILPOINTS") is None
