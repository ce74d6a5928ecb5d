"""Workers next to the data: the worker-based engine over the real RabbitMQ.

Real processes: ``pieceworks worker`` and ``pieceworks conductor
--transport`` against the real RabbitMQ, Redis and PostgreSQL (a service
that is down fails these tests, never skips them). Where a step ran is read
from the processes' own I/O counters (``/proc/PID/io``), not from logs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.gc.leases import acquire_lease
from pieceworks.common_algorithms.operations.backup_tasks import BackupTransfer, TransferChunks
from pieceworks.common_algorithms.operations.requests import BackupRequest
from pieceworks.common_algorithms.operations.restore import RestoreWrite
from pieceworks.common_algorithms.placement import NotPlaced, RemoteStep
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import JobFailed, wait_for
from pieceworks.execution.jobs import post_replicate
from pieceworks.protocols import BackendSpec
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    REPO,
    Board,
    SlowFileDriver,
    events,
    make_volume,
    poll,
    sha256_file,
    spec,
)
from tests.execution.test_metrics import scrape
from tests.execution.test_trust import persisted_rows

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
TRANSPORT = f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}//"


@pytest.fixture(scope="module", autouse=True)
def _rabbitmq_up() -> None:
    """Fail (never skip) at once if RabbitMQ is not reachable."""
    with socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=3):
        pass


def io(pid: int) -> dict[str, int]:
    """The process's I/O counters (rchar, wchar, read_bytes, ...)."""
    rows = Path(f"/proc/{pid}/io").read_text().splitlines()
    return {k: int(v) for k, v in (row.split(": ") for row in rows)}


def host_config(board: Board, tmp_path: Path, *, delay: str = "0", name: str = "host") -> Path:
    """Backends ``lab`` and ``far`` (file volumes), store ``lab``; the secret api_key stays here."""
    volumes = str(tmp_path / "volumes")
    return board.config(
        name,
        backends={
            "lab": spec("lab", "slowfile", path=volumes, delay=delay, api_key="s3cr3t-key"),
            "far": spec("far", "slowfile", path=volumes, delay=delay),
        },
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )


def start_worker(
    board: Board, name: str, config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A ``pieceworks worker`` process, once it says it is ready."""
    log_path = board.tmp / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed by the process end)
    command = [sys.executable, "-m", "pieceworks.cli", "-v", "--config", str(config)]
    command += ["worker", "--transport", TRANSPORT, "--exchange", board.namespace, *args]
    proc = subprocess.Popen(
        command, cwd=REPO, env={**board.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    board.procs.append(proc)
    poll(
        f"worker {name} ready",
        lambda: proc.poll() is not None or "worker ready" in log_path.read_text(errors="replace"),
        20,
    )
    assert proc.poll() is None, log_path.read_text(errors="replace")
    return proc


def conductor(
    board: Board, name: str, config: Path, *more: str
) -> tuple[subprocess.Popen[bytes], Path]:
    args = ("--transport", TRANSPORT, "--exchange", board.namespace)  # this test's workers only
    proc, path = board.conductor(name, *args, *more, config=config)
    poll(f"conductor {name} started", lambda: "conductor" in board.log(name), 20)
    return proc, path


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_the_transfer_runs_in_the_worker_process(board: Board, tmp_path: Path) -> None:
    """A 32 MiB backup: the worker reads and writes the data, the conductor neither.

    (The conductor reads a few MiB of its own: the modules it imports on its
    first job.)
    """
    size = 512 * CHUNK
    make_volume(tmp_path / "volumes", "vol-1", 512)
    config = host_config(board, tmp_path)
    worker = start_worker(board, "worker-1", config, "--backends", "lab", "--metrics-port", "0")
    port = int(re.findall(r"metrics on http://127.0.0.1:(\d+)/", board.log("worker-1"))[0])
    cond, path = conductor(board, "conductor-1", config)
    w0, c0 = io(worker.pid), io(cond.pid)

    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)
    samples = scrape(port)
    assert samples[("pieceworks_worker_steps_total", (("step", "BackupTransfer"),))] == 1
    assert ("pieceworks_worker_failed_total", (("step", "BackupTransfer"),)) not in samples
    moved = samples[("pieceworks_worker_bytes_total", (("direction", "read"),))]
    assert moved == result["bytes_read"]

    w1, c1 = io(worker.pid), io(cond.pid)
    worker_read, worker_wrote = w1["rchar"] - w0["rchar"], w1["wchar"] - w0["wchar"]
    cond_read, cond_wrote = c1["rchar"] - c0["rchar"], c1["wchar"] - c0["wchar"]
    assert result["bytes_read"] >= size * 7 // 8  # the holes are not read
    assert worker_read >= result["bytes_read"], (worker_read, cond_read)
    assert worker_wrote >= result["bytes_stored"], (worker_wrote, cond_wrote)
    assert cond_read < size // 4 and cond_wrote < size // 8, (cond_read, cond_wrote)
    placed = [(e["event"], e["atom"], e.get("job")) for e in events(path) if "backend" in e]
    assert placed == [("placed", f"backup-{result['backup_id']}.transfer-chunks", job.job_uuid)]

    # The restore's write runs on the worker too, and gives the volume back byte for byte.
    w2 = io(worker.pid)
    restore = board.post_restore("lab", "lab", backup_id=result["backup_id"], volume_id="vol-2")
    wait_for(board.url, PERSISTENCE, restore, timeout=60)
    assert io(worker.pid)["wchar"] - w2["wchar"] >= size * 7 // 8  # holes are not written
    volumes = tmp_path / "volumes"
    assert sha256_file(volumes / "vol-2") == sha256_file(volumes / "vol-1")
    stop(cond)
    stop(worker)
    assert worker.returncode == 0


def test_a_backend_without_a_worker_runs_in_process(board: Board, tmp_path: Path) -> None:
    """A worker serves ``lab`` only: a backup of ``far`` runs in the conductor, and succeeds."""
    size = 128 * CHUNK
    make_volume(tmp_path / "volumes", "vol-1", 128)
    config = host_config(board, tmp_path)
    worker = start_worker(board, "worker-1", config, "--backends", "lab")
    cond, path = conductor(board, "conductor-1", config)
    w0, c0 = io(worker.pid), io(cond.pid)

    job = board.post_backup("far", "lab", volume_id="vol-1", chunk_size=CHUNK)
    result = wait_for(board.url, PERSISTENCE, job, timeout=60)

    assert io(cond.pid)["rchar"] - c0["rchar"] >= result["bytes_read"] >= size * 7 // 8
    assert io(worker.pid)["rchar"] - w0["rchar"] < size // 8
    kinds = [(e["event"], e["backend"]) for e in events(path) if "backend" in e]
    assert kinds == [("in-process", "far")]
    stop(cond)
    stop(worker)


def test_a_worker_killed_mid_transfer_is_replaced_and_the_backup_made_once(
    board: Board, tmp_path: Path
) -> None:
    """SIGKILL at the 20th stored chunk: another worker re-runs the step; one backup, restorable."""
    make_volume(tmp_path / "volumes", "vol-1", 96)
    config = host_config(board, tmp_path, delay="0.02")
    doomed = start_worker(
        board,
        "worker-doomed",
        config,
        "--backends",
        "lab",
        env={"PIECEWORKS_FAILPOINTS": "backup.chunk-stored=kill@20"},
    )
    cond, path = conductor(board, "conductor-1", config)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    poll("the doomed worker's death", lambda: doomed.poll() is not None, 30)
    assert doomed.returncode == -signal.SIGKILL
    spare = start_worker(board, "worker-spare", config, "--backends", "lab")
    s0 = io(spare.pid)

    result = wait_for(board.url, PERSISTENCE, job, timeout=60)

    seen = [(e["event"], e.get("attempt")) for e in events(path) if "backend" in e]
    assert seen == [("placed", 1), ("lost", 1), ("placed", 2)]
    assert io(spare.pid)["rchar"] - s0["rchar"] >= result["bytes_read"]
    manifests = list(PosixStore(tmp_path / "store").list("manifests/"))
    assert len(manifests) == 1, manifests
    verify = subprocess.run(
        [sys.executable, "-m", "pieceworks.cli", "--config", str(config), "verify",
         "--store", "lab", result["backup_id"]],
        cwd=REPO, env=board.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    restore = board.post_restore("lab", "lab", backup_id=result["backup_id"], volume_id="vol-2")
    wait_for(board.url, PERSISTENCE, restore, timeout=60)
    volumes = tmp_path / "volumes"
    assert sha256_file(volumes / "vol-2") == sha256_file(volumes / "vol-1")
    stop(cond)
    stop(spare)


def test_a_step_queued_on_a_worker_that_dies_runs_in_process_after_the_queue_timeout(
    board: Board, tmp_path: Path
) -> None:
    """A one-thread worker runs one job's step while the other's waits in its queue; the
    worker is SIGKILLed. The running step is lost (no heartbeat) and re-run; the queued one
    never sent a heartbeat, so only ``--worker-queue-timeout`` (here 4 s, by default 120 s
    where TaskFlow's engine had 600) ends its wait: both backups are made, once each."""
    make_volume(tmp_path / "volumes", "vol-1", 96)
    make_volume(tmp_path / "volumes", "vol-2", 96)
    config = host_config(board, tmp_path, delay="0.05")
    doomed = start_worker(
        board,
        "worker-doomed",
        config,
        "--backends",
        "lab",
        "--threads",
        "1",
        env={"PIECEWORKS_FAILPOINTS": "backup.chunk-stored=kill@60"},  # ~3 s into the first
    )
    jobs = [
        board.post_backup("lab", "lab", volume_id=v, chunk_size=CHUNK) for v in ("vol-1", "vol-2")
    ]
    paths = [conductor(board, f"conductor-{i}", config, "--worker-queue-timeout", "4")[1]
             for i in (1, 2)]  # fmt: skip
    results = [wait_for(board.url, PERSISTENCE, job, timeout=60) for job in jobs]

    assert doomed.poll() == -signal.SIGKILL
    seen = sorted(
        tuple(e["event"] for e in events(path) if "backend" in e and "atom" in e) for path in paths
    )
    # the running step: placed, lost, then no worker answers; the queued one: placed, then
    # the queue timeout (TaskFlow's RequestTimeout) sends it home
    assert seen == [("placed", "in-process"), ("placed", "lost", "in-process")], seen
    manifests = list(PosixStore(tmp_path / "store").list("manifests/"))
    assert len(manifests) == 2 and {r["volume_id"] for r in results} == {"vol-1", "vol-2"}


class _Recorder:
    """A dispatcher that records what would travel, and places nothing."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, dict[str, Any]]] = []

    def run(
        self,
        step: type[RemoteStep],
        name: str,
        backend: str,
        arguments: Any,
        owner: Any,
    ) -> Any:
        self.sent.append((step.__name__, name, backend, dict(arguments)))
        raise NotPlaced("recorded only")


def test_data_steps_are_built_from_a_name_and_send_only_names(tmp_path: Path) -> None:
    """``cls(name=...)`` builds each step; the message holds names and values, no secret."""
    for cls in (BackupTransfer, RestoreWrite):
        assert cls(name="backup-x.transfer-chunks").name == "backup-x.transfer-chunks"
    make_volume(tmp_path / "volumes", "vol-1", 4)
    driver = SlowFileDriver(str(tmp_path / "volumes"), delay="0", api_key="s3cr3t-key")
    spec_ = BackendSpec("lab", "slowfile", {"path": "x", "api_key": "s3cr3t-key"})
    backend = Backend.of("lab", driver, spec_)
    store = Store("lab", PosixStore(tmp_path / "store"))
    step = TransferChunks(backend, store, BackupRequest("vol-1", chunk_size=CHUNK), "backup-b1")
    recorder = _Recorder()
    step.dispatcher = recorder
    lease = acquire_lease(store.objects, step.request.backup_id)
    result = step.execute(
        {"strategy": "direct-stream"}, {"volume_id": "vol-1", "snapshot_id": None},
        {"token": lease.token},
    )  # fmt: skip
    assert result["bytes_read"] > 0  # NotPlaced: it ran in process
    [(cls_name, name, backend_name, arguments)] = recorder.sent
    assert (cls_name, name, backend_name) == ("BackupTransfer", "backup-b1.transfer-chunks", "lab")
    text = json.dumps(arguments)  # what the worker-based engine would send: JSON-able
    assert "s3cr3t-key" not in text
    assert arguments["backend"] == "lab" and arguments["store"] == "lab"
    assert set(arguments) == {"backend", "store", "request", "attempt", "source", "chunk_form"}
    assert arguments["chunk_form"] == "columns"


def test_worker_command_errors_are_clear(board: Board, tmp_path: Path) -> None:
    """No transport (2), an unknown backend (3), no thread (2): named, before serving anything."""
    config = host_config(board, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pieceworks.cli", "--config", str(config), "worker"]
        return subprocess.run(
            [*command, *args], cwd=REPO, env=board.env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    done = run("--backends", "lab")
    assert done.returncode == 2
    assert "no transport: give --transport amqp://... or set [jobs] transport" in done.stderr
    done = run("--transport", TRANSPORT, "--backends", "nope")
    assert done.returncode == 3  # not found
    assert "backend 'nope'" in done.stderr
    done = run("--transport", TRANSPORT, "--threads", "0")  # a usage error, as it is parsed
    assert done.returncode == 2
    assert "pieceworks worker: error: argument --threads: '0' must be at least 1" in done.stderr
    assert os.environ.get("PIECEWORKS_FAILPOINTS") is None


def test_a_step_failing_on_a_worker_fails_the_job_with_its_masked_reason(
    board: Board, tmp_path: Path
) -> None:
    """The worker's driver error quotes the worker's password: masked there, before it travels."""
    worker_secret, conductor_secret = "w0rker-Pa55-only-here", "c0nductor-Pa55"
    make_volume(tmp_path / "volumes", "vol-1", 4)
    volumes = str(tmp_path / "volumes")
    store = {"lab": spec("lab", "posix", path=str(tmp_path / "store"))}
    worker_config = board.config(
        "worker-host",
        backends={"leaky": spec("leaky", "leakyfile", path=volumes, password=worker_secret)},
        stores=store,
    )
    conductor_config = board.config(
        "conductor-host",
        backends={"leaky": spec("leaky", "leakyfile", path=volumes, password=conductor_secret)},
        stores=store,
    )
    start_worker(board, "worker-1", worker_config)
    cond, path = conductor(board, "conductor-1", conductor_config)
    job = board.post_backup("leaky", "lab", volume_id="vol-1", chunk_size=CHUNK)

    with pytest.raises(JobFailed) as failed:
        wait_for(board.url, PERSISTENCE, job, timeout=60)
    text = str(failed.value)
    assert "on a worker of backend 'leaky': BackendError: cannot log in" in text
    assert "password=***" in text and worker_secret not in text
    assert worker_secret not in persisted_rows(job)
    assert worker_secret not in board.log("conductor-1")
    assert next(e["event"] for e in events(path) if "backend" in e) == "placed"
    stop(cond)


def test_a_replication_copies_on_a_worker_that_has_both_backends(
    board: Board, tmp_path: Path
) -> None:
    """A worker lacking the target declines (in process); one with both copies the volume."""
    size = 256 * CHUNK
    make_volume(tmp_path / "volumes", "vol-1", 256)
    config = host_config(board, tmp_path)
    partial = board.config(
        "partial",
        backends={"lab": spec("lab", "slowfile", path=str(tmp_path / "volumes"), delay="0")},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    lacking = start_worker(board, "worker-lacking", partial)
    cond, path = conductor(board, "conductor-1", config)
    request = {"volume_id": "vol-1", "strategies": ["stream"]}

    first = post_replicate(
        board.url, PERSISTENCE, "lab", "far", {**request, "target_volume_id": "vol-2"}
    )
    board.jobs.append(first)
    wait_for(board.url, PERSISTENCE, first, timeout=60)
    offered, declined = [e for e in events(path) if "backend" in e]
    assert (offered["event"], declined["event"]) == ("placed", "in-process")
    assert "NotServedHere" in declined["why"]
    assert "backend 'far'" in declined["why"]
    stop(lacking)

    both = start_worker(board, "worker-both", config, "--backends", "lab")
    w0 = io(both.pid)
    second = post_replicate(
        board.url, PERSISTENCE, "lab", "far", {**request, "target_volume_id": "vol-3"}
    )
    board.jobs.append(second)
    wait_for(board.url, PERSISTENCE, second, timeout=60)
    assert [e["event"] for e in events(path) if "backend" in e][2:] == ["placed"]
    assert io(both.pid)["rchar"] - w0["rchar"] >= size * 7 // 8
    volumes = tmp_path / "volumes"
    for copy in ("vol-2", "vol-3"):
        assert sha256_file(volumes / copy) == sha256_file(volumes / "vol-1")
    stop(cond)
    stop(both)
