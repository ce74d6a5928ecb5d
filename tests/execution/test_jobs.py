"""Jobs on a real Redis jobboard, state in a real PostgreSQL, conductors as real processes.

The crash test kills a conductor (SIGKILL) in the middle of a transfer; a
second conductor claims the job once the dead one's claim expires, resumes
the flow from PostgreSQL (atoms already done are not run again; chunks
already stored are not sent again) and produces the same backup as a clean
run. These tests need the services: they fail, never skip, without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy

from pieceworks.common_algorithms import Backend, BackupRequest, RestoreRequest, Store, backup
from pieceworks.common_algorithms.manifest import read_manifest
from pieceworks.common_algorithms.restore import restore
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import (
    PostedJob,
    atom_states,
    destroy_job_book,
    jobboard_conf,
    post_backup,
    post_restore,
    wait_for,
)
from pieceworks.protocols import Source, VolumeReader

REPO = Path(__file__).resolve().parents[2]
PERSISTENCE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CHUNK = 64 * 1024
#: Figures measured by the tests, printed at the end of the module (``-s``).
FIGURES: dict[str, float] = {}


class _SlowReader:
    """A `VolumeReader` that sleeps before each read: a transfer long enough to kill."""

    def __init__(self, reader: VolumeReader, delay: float) -> None:
        self._reader, self._delay = reader, delay

    @property
    def size(self) -> int:
        return self._reader.size

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        time.sleep(self._delay)
        return self._reader.readinto_at(offset, buffer)

    def close(self) -> None:
        self._reader.close()


class SlowFileDriver(FileDriver):
    """The file driver, reading `delay` seconds per read (entry point ``slowfile``)."""

    def __init__(self, path: str, delay: str = "0.03", **unknown: object) -> None:
        super().__init__(path, **unknown)
        self._delay = float(delay)

    def open_read(self, source: Source) -> VolumeReader:
        return _SlowReader(super().open_read(source), self._delay)


@pytest.fixture(scope="module", autouse=True)
def _services_up() -> Iterator[None]:
    """Fail (never skip) at once if Redis or PostgreSQL is not reachable."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3)
    assert client.ping(), f"Redis at {REDIS_HOST}:{REDIS_PORT} is not answering"
    client.close()
    engine = sqlalchemy.create_engine(PERSISTENCE)
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1
    engine.dispose()
    yield
    if FIGURES:
        print("\njob figures:", json.dumps(FIGURES, sort_keys=True))


@dataclass
class Board:
    """One test's own jobboard namespace, its conductors and its logbooks (all cleaned up)."""

    tmp: Path
    namespace: str
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    jobs: list[PostedJob] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.namespace}"

    def conductor(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start a conductor process; return it and its JSON-lines events file."""
        events = self.tmp / f"{name}.events.jsonl"
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed by the process end)
        command = [sys.executable, "-m", "pieceworks.execution", "conductor"]
        command += ["--jobboard", self.url, "--persistence", PERSISTENCE, "--name", name]
        command += ["--events", str(events), "--wait-timeout", "0.2", *args]
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc, events

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def post_backup(self, backend: dict[str, Any], store: dict[str, Any], **req: Any) -> PostedJob:
        job = post_backup(self.url, PERSISTENCE, backend, store, req)
        self.jobs.append(job)
        return job

    def post_restore(self, backend: dict[str, Any], store: dict[str, Any], **req: Any) -> PostedJob:
        job = post_restore(self.url, PERSISTENCE, backend, store, req)
        self.jobs.append(job)
        return job


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    """A unique jobboard namespace; a test-only driver installed through a dist-info."""
    plugins = tmp_path / "plugins"
    info = plugins / "pw_jobs_testdriver-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pw-jobs-testdriver\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[pieceworks.drivers]\nslowfile = tests.execution.test_jobs:SlowFileDriver\n"
    )
    path = os.pathsep.join([str(plugins), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}
    b = Board(tmp_path, f"pw-test-{uuid.uuid4().hex[:12]}", env)
    try:
        yield b
    finally:
        for proc in b.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for job in b.jobs:
            destroy_job_book(PERSISTENCE, job)
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        keys = list(client.scan_iter(match=f"{b.namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()


def poll(what: str, check: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    """Wait until `check()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def atom_runs(path: Path, step: str, state: str = "RUNNING") -> int:
    """How many times the conductor's events show atom ``*.<step>`` entering `state`."""
    return sum(
        1
        for e in events(path)
        if e["event"] == "atom" and str(e["atom"]).endswith(f".{step}") and e["state"] == state
    )


def stored_chunks(store: Path) -> int:
    return sum(1 for _ in PosixStore(store).list("chunks/"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def make_volume(directory: Path, volume_id: str, blocks: int) -> Path:
    """A volume of random 64 KiB blocks with a zero block every eighth (a hole)."""
    directory.mkdir(exist_ok=True)
    path = directory / volume_id
    with open(path, "wb") as f:
        for i in range(blocks):
            f.write(bytes(CHUNK) if i % 8 == 7 else os.urandom(CHUNK))
    return path


def spec(name: str, driver: str, **options: str) -> dict[str, Any]:
    return {"name": name, "driver": driver, "options": options}


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
    backend = spec("lab", "file", path=str(tmp_path / "volumes"))
    store = spec("lab", "posix", path=str(tmp_path / "store"))
    proc, ev = board.conductor("conductor-1", "--max-dispatches", "2")

    job = board.post_backup(backend, store, volume_id="vol-1", chunk_size=CHUNK)
    result = wait_for(board.url, PERSISTENCE, job, timeout=30)
    manifest = read_manifest(PosixStore(tmp_path / "store"), result["backup_id"])
    assert result["chunks_total"] == len(manifest.chunks) == 35  # 5 of 40 blocks are holes
    assert result["strategy"] == "direct-stream"

    restore_job = board.post_restore(
        backend, store, backup_id=result["backup_id"], volume_id="vol-1-restored"
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
    backend = spec("lab", "slowfile", path=str(tmp_path / "volumes"), delay="0.03")
    store = spec("lab", "posix", path=str(store_dir))
    job = board.post_backup(backend, store, volume_id="vol-1", chunk_size=CHUNK)
    backup_id = job.name.removeprefix("backup-")

    a, ev_a = board.conductor("conductor-a", "--claim-expiry", claim_expiry)
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
        "conductor-b", "--claim-expiry", claim_expiry, "--max-dispatches", "1"
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
    store_dir = tmp_path / "store"
    backend = spec("lab", "slowfile", path=str(tmp_path / "volumes"), delay="0.03")
    store = spec("lab", "posix", path=str(store_dir))
    job = board.post_backup(backend, store, volume_id="vol-1", chunk_size=CHUNK)

    a, ev_a = board.conductor("conductor-a")  # default claim expiry (30 s): not what frees it
    poll("conductor A to start the transfer", lambda: atom_runs(ev_a, "transfer-chunks") == 1, 30)
    a.send_signal(signal.SIGTERM)
    b, ev_b = board.conductor("conductor-b", "--max-dispatches", "1")
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
