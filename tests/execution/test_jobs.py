"""Jobs on a real Redis jobboard, state in a real PostgreSQL, conductors as real processes.

The crash test kills a conductor (SIGKILL) in the middle of a transfer; a
second conductor claims the job once the dead one's claim expires, resumes
the flow from PostgreSQL (atoms already done are not run again; chunks
already stored are not sent again) and produces the same backup as a clean
run. These tests need the services: they fail, never skip, without them.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pieceworks.common_algorithms import Backend, BackupRequest, RestoreRequest, Store, backup
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.common_algorithms.operations.restore import restore
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import atom_states, jobboard_conf, wait_for
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    Board,
    atom_runs,
    events,
    make_volume,
    poll,
    sha256_file,
    slow_config,
    spec,
    stored_chunks,
)

#: Figures measured by the tests, printed at the end of the module (``-s``).
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    if FIGURES:
        print("\njob figures:", json.dumps(FIGURES, sort_keys=True))


def test_jobboard_url_becomes_taskflow_conf() -> None:
    """The command line's jobboard URL maps to TaskFlow's dict configuration."""
    assert jobboard_conf("redis://:s3cret@10.0.0.5:6380/ns?claim_expiry=5") == {
        "board": "redis",
        "host": "10.0.0.5",
        "port": 6380,
        "namespace": "ns",
        "password": "s3cret",
        "claim_expiry": "5",
    }


def test_a_conductor_process_runs_posted_backup_and_restore_jobs(
    board: Board, tmp_path: Path
) -> None:
    """Post a backup then a restore; a conductor process runs and consumes both."""
    volume = make_volume(tmp_path / "volumes", "vol-1", 40)
    config = board.config(
        "host",
        backends={"lab": spec("lab", "file", path=str(tmp_path / "volumes"))},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    proc, ev = board.conductor("conductor-1", "--max-dispatches", "2", config=config)

    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    result = wait_for(board.url, PERSISTENCE, job, timeout=30)
    manifest = read_manifest(PosixStore(tmp_path / "store"), result["backup_id"])
    assert result["chunks_total"] == len(manifest.chunks) == 35  # 5 of 40 blocks are holes
    assert result["strategy"] == "direct-stream"

    restore_job = board.post_restore(
        "lab", "lab", backup_id=result["backup_id"], volume_id="vol-1-restored"
    )
    restored = wait_for(board.url, PERSISTENCE, restore_job, timeout=30)
    assert restored["size"] == volume.stat().st_size
    assert proc.wait(timeout=30) == 0, board.log("conductor-1")  # --max-dispatches 2
    assert sha256_file(tmp_path / "volumes" / "vol-1-restored") == sha256_file(volume)
    done = [e["job"] for e in events(ev) if e["event"] == "consumed"]
    assert done == [job.job_uuid, restore_job.job_uuid]
    assert "s3cret" not in board.log("conductor-1")
    assert set(atom_states(PERSISTENCE, job).values()) == {"SUCCESS"}


def test_a_conductor_killed_mid_backup_is_resumed_by_another(board: Board, tmp_path: Path) -> None:
    """SIGKILL conductor A mid-transfer; B resumes from PostgreSQL; same backup, same bytes."""
    blocks, claim_expiry = 128, "2"
    volume = make_volume(tmp_path / "volumes", "vol-1", blocks)
    total = blocks - blocks // 8
    store_dir = tmp_path / "store"
    config = slow_config(board, tmp_path)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    backup_id = job.name.removeprefix("backup-")

    a, ev_a = board.conductor("conductor-a", "--claim-expiry", claim_expiry, config=config)
    poll(
        "conductor A to be mid-transfer",
        lambda: atom_runs(ev_a, "transfer-chunks") == 1 and stored_chunks(store_dir) >= 10,
        timeout=30,
    )
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    killed_at, killed_wall = time.monotonic(), time.time()
    before = stored_chunks(store_dir)
    assert 10 <= before < total, f"A stored {before} of {total} chunks before it died"
    assert atom_runs(ev_a, "transfer-chunks", "SUCCESS") == 0
    assert not (store_dir / "manifests" / f"{backup_id}.json").exists()
    persisted = atom_states(PERSISTENCE, job)
    assert persisted[f"{job.name}.take-lease"] == "SUCCESS"
    assert persisted[f"{job.name}.transfer-chunks"] == "RUNNING"

    b, ev_b = board.conductor(
        "conductor-b", "--claim-expiry", claim_expiry, "--max-dispatches", "1", config=config
    )
    result = wait_for(board.url, PERSISTENCE, job, timeout=40)
    resumed_in = time.monotonic() - killed_at
    assert b.wait(timeout=20) == 0, board.log("conductor-b")
    claimed = [e for e in events(ev_b) if e["event"] == "claimed"]
    assert [e["job"] for e in claimed] == [job.job_uuid]
    claim_wait = claimed[0]["t"] - killed_wall

    # Resumed, not restarted: atoms done before the crash are not run again...
    assert atom_runs(ev_a, "take-lease", "SUCCESS") == 1
    assert atom_runs(ev_b, "take-lease") == 0
    assert atom_runs(ev_b, "prepare-source") == 0
    assert atom_runs(ev_b, "transfer-chunks") == 1
    assert atom_runs(ev_b, "write-manifest", "SUCCESS") == 1
    # ...and the transfer re-run sends only the chunks A had not stored.
    assert result["chunks_total"] == total
    assert result["chunks_new"] == total - before
    assert not list(PosixStore(store_dir).list("leases/"))

    # Identical result: the same chunk list as a clean backup, and the same bytes back.
    clean_store = Store("clean", PosixStore(tmp_path / "clean"))
    files = Backend.of("lab", FileDriver(tmp_path / "volumes"))
    clean = backup(files, clean_store, BackupRequest("vol-1", chunk_size=CHUNK))
    resumed = read_manifest(PosixStore(store_dir), backup_id)
    assert resumed.chunks == read_manifest(clean_store.objects, clean.backup_id).chunks
    resumed_store = Store("lab", PosixStore(store_dir))
    restore(files, resumed_store, RestoreRequest(backup_id, "vol-1-restored"))
    assert sha256_file(tmp_path / "volumes" / "vol-1-restored") == sha256_file(volume)

    FIGURES.update(
        {
            "chunks_total": total,
            "chunks_stored_before_kill": before,
            "chunks_new_after_resume": result["chunks_new"],
            "claim_expiry_s": float(claim_expiry),
            "kill_to_done_s": round(resumed_in, 2),
            "kill_to_b_claim_s": round(claim_wait, 2),
            "resumed_transfer_s": result["transfer_seconds"],
        }
    )


def test_a_stopped_conductor_hands_its_job_over_at_once(board: Board, tmp_path: Path) -> None:
    """SIGTERM: A finishes its current atom, suspends the flow, abandons the job; B goes on."""
    make_volume(tmp_path / "volumes", "vol-1", 48)
    config = slow_config(board, tmp_path)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)

    a, ev_a = board.conductor("conductor-a", config=config)  # claim expiry 30 s: not what frees it
    poll("conductor A to start the transfer", lambda: atom_runs(ev_a, "transfer-chunks") == 1, 30)
    a.send_signal(signal.SIGTERM)
    b, ev_b = board.conductor("conductor-b", "--max-dispatches", "1", config=config)
    result = wait_for(board.url, PERSISTENCE, job, timeout=40)
    assert a.wait(timeout=20) == 0, board.log("conductor-a")
    assert b.wait(timeout=20) == 0, board.log("conductor-b")

    assert [e["event"] for e in events(ev_a) if e["event"] != "atom"] == ["claimed", "abandoned"]
    assert [e["event"] for e in events(ev_b) if e["event"] != "atom"] == ["claimed", "consumed"]
    assert atom_runs(ev_a, "transfer-chunks", "SUCCESS") == 1
    assert atom_runs(ev_b, "take-lease") == atom_runs(ev_b, "transfer-chunks") == 0
    assert atom_runs(ev_b, "write-manifest", "SUCCESS") == 1
    assert result["chunks_total"] == 42
    abandoned = next(e["t"] for e in events(ev_a) if e["event"] == "abandoned")
    claimed = next(e["t"] for e in events(ev_b) if e["event"] == "claimed")
    FIGURES["abandon_to_claim_s"] = round(claimed - abandoned, 2)
