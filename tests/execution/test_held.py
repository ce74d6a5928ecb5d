"""`pieceworks recover` after a conductor died mid-job keeps what the resumed job needs.

A conductor SIGKILLed mid-transfer leaves the job on the board, with the
lease and the temporary snapshot it took (their steps are done: the next
conductor does not take them again). An operator running `pieceworks
recover` then, as after any crash, saw their owner dead and removed them;
the resumed backup failed (``SnapshotNotFound``, job ``REVERTED``). Real
Redis, PostgreSQL and conductor processes; fails (never skips) without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import JobFailed, PostedJob, atom_states, post_replicate, wait_for
from pieceworks.execution.held import BoardJob, JobHeldStore, holding_job
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    REPO,
    Board,
    atom_runs,
    make_volume,
    poll,
    sha256_file,
    slow_config,
    stored_chunks,
)


def _with_jobs(board: Board, config: Path) -> Path:
    """`config` with a ``[jobs]`` section naming the test's board (recover reads it there)."""
    text = config.read_text() + f'[jobs]\njobboard = "{board.url}"\n'
    config.write_text(text + f'persistence = "{PERSISTENCE}"\n')
    return config


def _recover(config: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pieceworks.cli", "--config", str(config), "--json", "recover"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _snapshots(volumes: Path) -> list[str]:
    """The file driver's snapshots of vol-1 (``.snapshots/vol-1/<id>``)."""
    folder = volumes / ".snapshots" / "vol-1"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_recover_keeps_the_lease_and_snapshot_of_a_job_a_conductor_resumes(
    board: Board, tmp_path: Path
) -> None:
    """Kill A mid-transfer, run recover, start B: the backup completes, recover kept its markers."""
    volumes, store_dir = tmp_path / "volumes", tmp_path / "store"
    volume = make_volume(volumes, "vol-1", 64)
    config = _with_jobs(board, slow_config(board, tmp_path))
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK, in_use=True)
    backup_id = job.name.removeprefix("backup-")

    a, ev_a = board.conductor(
        "conductor-a",
        "--claim-expiry",
        "2",
        config=config,
        env={"PIECEWORKS_FAILPOINTS": "backup.chunk-stored=kill@8"},
    )
    assert a.wait(timeout=60) != 0, board.log("conductor-a")
    assert atom_runs(ev_a, "transfer-chunks") == 1
    assert atom_states(PERSISTENCE, job)[f"{job.name}.prepare-source"] == "SUCCESS"
    snapshots = _snapshots(volumes)
    assert snapshots, "the snapshot-stream backup took no temporary snapshot"
    assert [*PosixStore(store_dir).list("leases/")] == [f"leases/{backup_id}"]

    recovered = _recover(config, board.env)
    kept = {(i["kind"], i["name"]): i for i in recovered["items"] if i["action"] == "kept"}
    assert ("lease", f"leases/{backup_id}") in kept, recovered
    journal = [i for (kind, _), i in kept.items() if kind == "run-journal"]
    assert len(journal) == 1, recovered
    assert job.job_uuid in journal[0]["reason"], journal
    assert not [i for i in recovered["items"] if i["action"] != "kept"], recovered
    assert _snapshots(volumes) == snapshots  # the temporary snapshot is still there
    assert [*PosixStore(store_dir).list("leases/")] == [f"leases/{backup_id}"]

    board.conductor("conductor-b", "--claim-expiry", "2", "--max-dispatches", "1", config=config)
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert result["chunks_total"] == 56
    assert 1 <= 56 - result["chunks_new"] <= 8 + 1  # what A stored was not sent again
    poll("the resumed job to remove its snapshot", lambda: not _snapshots(volumes), 10)
    assert not [*PosixStore(store_dir).list("leases/")]
    assert not [*PosixStore(store_dir).list("runs/")]
    assert stored_chunks(store_dir) == 56
    assert sha256_file(volume)  # the volume itself is untouched

    # Off the board, nothing is held any more: recover finds nothing left.
    after = _recover(config, board.env)
    assert after["items"] == [], after


def test_a_view_hides_only_what_a_job_on_the_board_holds(tmp_path: Path) -> None:
    """Journals by run name, leases by backup id; read leases and other runs stay visible."""
    store = PosixStore(tmp_path)
    on_board = {"backup-bk-1": BoardJob("j1", "backup-bk-1", "CLAIMED")}
    bodies = {
        "runs/t1": {"kind": "run", "id": "backup-bk-1"},
        "runs/t2": {"kind": "run", "id": "backup-bk-2"},
        "leases/bk-1": {"kind": "lease", "id": "bk-1"},
        "leases/bk-2": {"kind": "lease", "id": "bk-2"},
        "leases/read.t3": {"kind": "read", "id": "t3"},
        "runs/garbled": None,
    }
    for key, body in bodies.items():
        store.put(key, b"{not json" if body is None else json.dumps(body).encode())
    view = JobHeldStore(store, on_board)
    assert sorted(view.list("runs/")) == ["runs/garbled", "runs/t2"]
    assert sorted(view.list("leases/")) == ["leases/bk-2", "leases/read.t3"]
    assert [(h.key, h.kind, h.job.job_id) for h in view.held] == [
        ("runs/t1", "run-journal", "j1"),
        ("leases/bk-1", "lease", "j1"),
    ]
    assert holding_job({"kind": "run", "id": "replicate-op-1"}, on_board) is None
    replicating = {"replicate-op-1": BoardJob("j2", "replicate-op-1", "UNCLAIMED")}
    for body in ({"kind": "run", "id": "replicate-op-1"}, {"kind": "lease", "id": "op-1"}):
        assert holding_job(body, replicating) == replicating["replicate-op-1"], body
    assert holding_job({"kind": "run", "id": "op-1"}, replicating) is None
    assert JobHeldStore(store, {}).list("runs/") is not None
    assert sorted(JobHeldStore(store, {}).list("runs/")) == ["runs/garbled", "runs/t1", "runs/t2"]


def test_recover_with_a_jobboard_out_of_reach_removes_nothing(board: Board, tmp_path: Path) -> None:
    """A board that cannot be read: exit 1 naming it, and a dead run's lease is still there."""
    store = PosixStore(tmp_path / "store")
    dead = {"kind": "lease", "id": "bk-1", "host": "elsewhere", "pid": 1, "renewed": 0.0}
    store.put("leases/bk-1", json.dumps(dead).encode())
    config = slow_config(board, tmp_path)
    config.write_text(
        config.read_text()
        + f'[jobs]\njobboard = "redis://127.0.0.1:1/x"\npersistence = "{PERSISTENCE}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pieceworks.cli", "--config", str(config), "recover"],
        cwd=REPO,
        env=board.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    assert "127.0.0.1:1" in done.stderr, done.stderr
    assert [*store.list("leases/")] == ["leases/bk-1"]


def _backup_job_killed_at(board: Board, tmp_path: Path, failpoint: str) -> tuple[Path, PostedJob]:
    """A backup job of a 64-block volume whose first conductor is killed at `failpoint`.

    Returns the configuration (with ``[jobs]``) and the posted job, still on the board.
    """
    make_volume(tmp_path / "volumes", "vol-1", 64)
    config = _with_jobs(board, slow_config(board, tmp_path))
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    a, _ = board.conductor(
        "conductor-a",
        "--claim-expiry",
        "2",
        config=config,
        env={"PIECEWORKS_FAILPOINTS": failpoint},
    )
    assert a.wait(timeout=60) != 0, board.log("conductor-a")
    return config, job


def test_a_prune_running_when_a_job_resumes_leaves_its_backup_whole(
    board: Board, tmp_path: Path
) -> None:
    """A dies mid-transfer; prune starts (A's lease is dead) and is slow; B resumes the job.

    The backup B reports as written must be whole: every chunk its manifest
    names is in the store.
    """
    store_dir = tmp_path / "store"
    config, job = _backup_job_killed_at(board, tmp_path, "backup.chunk-stored=kill@8")
    before = stored_chunks(store_dir)
    prune = subprocess.Popen(
        [sys.executable, "-m", "pieceworks.cli", "--config", str(config), "prune"],
        cwd=REPO,
        env={**board.env, "PIECEWORKS_FAILPOINTS": "gc.chunk-deleted=sleep:6000@1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    board.procs.append(prune)
    poll("prune to delete its first chunk", lambda: stored_chunks(store_dir) < before, 30)

    board.conductor("conductor-b", "--claim-expiry", "2", "--max-dispatches", "1", config=config)
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert prune.wait(timeout=60) == 0
    manifest = read_manifest(PosixStore(store_dir), result["backup_id"])
    present = {key.rsplit("/", 1)[-1] for key in PosixStore(store_dir).list("chunks/")}
    missing = [c.offset for c in manifest.chunks if c.digest not in present]
    assert not missing, f"{len(missing)} of {len(manifest.chunks)} chunks deleted under the job"


def test_a_job_resumed_at_its_manifest_after_a_prune_took_its_chunks_writes_no_manifest(
    board: Board, tmp_path: Path
) -> None:
    """A dies after its transfer, before its manifest; prune runs; B resumes at the manifest.

    A's lease was dead, so the prune deleted every chunk A stored (no
    manifest named them). B's transfer result still lists them: B must not
    write a manifest naming missing chunks (it did, and the job succeeded);
    it fails the job with ``chunks-collected`` and writes nothing.
    """
    store_dir = tmp_path / "store"
    config, job = _backup_job_killed_at(board, tmp_path, "backup.before-manifest=kill")
    assert stored_chunks(store_dir) > 0
    prune = subprocess.run(
        [sys.executable, "-m", "pieceworks.cli", "--config", str(config), "prune"],
        cwd=REPO,
        env=board.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert prune.returncode == 0, prune.stdout + prune.stderr
    assert stored_chunks(store_dir) == 0

    board.conductor("conductor-b", "--claim-expiry", "2", "--max-dispatches", "1", config=config)
    with pytest.raises(JobFailed, match="ChunksCollected") as failed:
        wait_for(board.url, PERSISTENCE, job, timeout=60)
    assert "no longer stored" in str(failed.value)
    assert not [*PosixStore(store_dir).list("manifests/")]
    assert not [*PosixStore(store_dir).list("leases/")]


def test_recover_keeps_the_local_journal_of_a_replication_job_on_the_board(
    board: Board, tmp_path: Path
) -> None:
    """A replication job without a store journals on its conductor's host; recover keeps it.

    The journal of a killed conductor (a process that has exited) names the
    job's temporary snapshot; while the job waits on the board, recover
    there must leave both alone.
    """
    home = tmp_path / "home"
    (tmp_path / "volumes").mkdir()
    config = _with_jobs(board, slow_config(board, tmp_path))
    job = post_replicate(
        board.url,
        PERSISTENCE,
        "lab",
        "lab",
        {"volume_id": "vol-1", "target_volume_id": "vol-2"},
    )
    board.jobs.append(job)
    op = job.name.removeprefix("replicate-")
    entry = {"backend": "lab", "volume_id": "vol-1", "snapshot_id": f"pw-{op}-stream"}
    dead_writer = (
        "import sys; from pieceworks.common_algorithms.gc.journal import LocalJournal;"
        f" LocalJournal(sys.argv[1]).record({op!r}, {job.name!r}, {entry!r})"
    )
    subprocess.run(
        [sys.executable, "-c", dead_writer, str(home / "journal")],
        cwd=REPO,
        env=board.env,
        check=True,
        timeout=60,
    )
    env = {**board.env, "PIECEWORKS_HOME": str(home)}
    recovered = _recover(config, env)
    assert [(i["kind"], i["name"], i["action"]) for i in recovered["items"]] == [
        ("run-journal", f"{op}.json", "kept")
    ], recovered
    assert job.job_uuid in recovered["items"][0]["reason"]
    assert (home / "journal" / f"{op}.json").exists()
