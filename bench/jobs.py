"""Jobs at scale: N backups of SIZE MiB posted on the real Redis, run by conductors (and workers).

    python bench/jobs.py --jobs 20 --size-mib 64 --conductors 1
    python bench/jobs.py --jobs 20 --size-mib 1 --conductors 1      # per-job overhead
    python bench/jobs.py --jobs 20 --size-mib 64 --conductors 2 --workers 1,2 --trials 2
    python bench/jobs.py --worker-death --trials 3                  # death -> resumption

Prints one JSON object per run (a line each): seconds from the first post
until every job is done, seconds per job, MB/s over all jobs, and for
comparison the seconds of the same backup run in process (``backup()``, no
jobboard, no persistence). With ``--workers 1,2`` each trial runs once per
worker count, interleaved (1, 2, 1, 2, ...), the transfers on that many
``pieceworks worker`` processes (``--threads 1`` each) over RabbitMQ; the
conductors run with ``--transport``. ``--worker-death``: one 64 MiB backup
whose worker SIGKILLs itself mid-transfer (failpoint
``backup.chunk-stored=kill@4``) while a second worker waits; prints the
seconds from the death to the step's re-submission to the other worker,
and to the job's end. Needs Redis 127.0.0.1:6379, PostgreSQL 127.0.0.1:5432
(its own database pw_bench_jobs, created if missing) and, for workers,
RabbitMQ 127.0.0.1:5672 (guest/guest). Prints the load average before and
after each run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import destroy_job_book, post_backup, wait_for

#: A database of its own: a test's conductor with a short keep_finished removes
#: every finished logbook of the database it shares.
PERSISTENCE = os.environ.get(
    "PW_BENCH_PERSISTENCE", "postgresql://postgres@127.0.0.1:5432/pw_bench_jobs"
)
TRANSPORT = "amqp://guest:guest@127.0.0.1:5672//"
CHUNK = 4 * 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def _load() -> float:
    return round(os.getloadavg()[0], 1)


#: Every process this bench started: whatever happens, none outlives it (see main).
_PROCS: list[subprocess.Popen[bytes]] = []


def _start(command: list[str], log: Path | None = None, env: dict[str, str] | None = None) -> Any:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    if log:
        out.close()  # type: ignore[union-attr]
    _PROCS.append(proc)
    return proc


def _wait_text(path: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} in {path} after {timeout} s")
        time.sleep(0.05)


@contextmanager
def _site(size_mib: int, volumes_n: int) -> Iterator[tuple[Path, Path]]:
    """A temporary host: `volumes_n` random volumes of `size_mib`, a store, a config."""
    with tempfile.TemporaryDirectory(prefix="pw-bench-jobs-") as tmp:
        root = Path(tmp)
        volumes, store = root / "volumes", root / "store"
        volumes.mkdir()
        for i in range(volumes_n):
            with open(volumes / f"vol-{i}", "wb") as f:
                f.write(os.urandom(size_mib * 1024 * 1024))
        config = root / "host.toml"
        config.write_text(
            f'[backends.lab]\ndriver = "file"\npath = "{volumes}"\n'
            f'[stores.lab]\ndriver = "posix"\npath = "{store}"\n'
        )
        yield root, config


def _cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pieceworks.cli", "-v", "--config", str(config), *args]


def _amqp(namespace: str) -> list[str]:
    """The broker, and an exchange of this run's own (no stray worker takes its steps)."""
    return ["--transport", TRANSPORT, "--exchange", namespace]


def _cleanup(namespace: str, jobs: list[Any]) -> None:
    for job in jobs:
        destroy_job_book(PERSISTENCE, job)
    client = redis.Redis()
    keys = list(client.scan_iter(match=f"{namespace}*"))
    if keys:
        client.delete(*keys)
    client.close()


def run_jobs(root: Path, config: Path, args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """Post `args.jobs` backups; conductors (and `workers` workers) run them; the figures."""
    namespace = f"pw-bench-{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:6379/{namespace}"
    procs = []
    for w in range(workers):
        log = root / f"worker-{w}.log"
        procs.append(_start(_cli(config, "worker", *_amqp(namespace), "--threads", "1"), log))
        _wait_text(log, "worker ready")
    command = _cli(config, "conductor", "--jobboard", url, "--persistence", PERSISTENCE)
    command += ["--wait-timeout", "0.1"]
    if workers:
        command += _amqp(namespace)
    for c in range(args.conductors):
        log = root / f"conductor-{c}.log"
        procs.append(_start(command, log))
        _wait_text(log, f"on {url}")
    load_before = _load()
    started = time.monotonic()
    jobs = [
        post_backup(url, PERSISTENCE, "lab", "lab", {"volume_id": f"vol-{i}", "chunk_size": CHUNK})
        for i in range(args.jobs)
    ]
    try:
        for job in jobs:
            wait_for(url, PERSISTENCE, job, timeout=3600)
    except Exception:
        for log in sorted(root.glob("*.log")):
            print(f"== {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
    seconds = time.monotonic() - started
    logs = [p.read_text(errors="replace") for p in root.glob("conductor-*.log")]
    lost = sum(text.count("went silent") for text in logs)
    unplaced = sum(text.count("runs in process") for text in logs)
    _cleanup(namespace, jobs)
    shutil.rmtree(root / "store", ignore_errors=True)  # the next run stores every chunk again
    total = args.jobs * args.size_mib * 1024 * 1024
    return {
        "jobs": args.jobs,
        "size_mib": args.size_mib,
        "conductors": args.conductors,
        "workers": workers,
        "seconds": round(seconds, 2),
        "seconds_per_job": round(seconds / args.jobs, 3),
        "mb_per_s": round(total / seconds / 1e6, 1),
        "workers_lost": lost,
        "steps_without_worker": unplaced if workers else None,
        "load_before": load_before,
        "load_after": _load(),
    }


def worker_death(root: Path, config: Path) -> dict[str, Any]:
    """One backup whose worker dies mid-transfer: seconds from the death to resumption."""
    namespace = f"pw-bench-{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:6379/{namespace}"
    worker = _cli(config, "worker", *_amqp(namespace), "--threads", "1")
    doomed_log = root / "doomed.log"
    doomed = _start(worker, doomed_log, {"PIECEWORKS_FAILPOINTS": "backup.chunk-stored=kill@4"})
    _wait_text(doomed_log, "worker ready")
    events = root / f"events-{namespace}.jsonl"
    command = _cli(config, "conductor", "--jobboard", url, "--persistence", PERSISTENCE)
    command += ["--wait-timeout", "0.1", *_amqp(namespace), "--events", str(events)]
    conductor_log = root / "conductor.log"
    conductor = _start(command, conductor_log)
    _wait_text(conductor_log, f"on {url}")
    load_before = _load()
    job = post_backup(url, PERSISTENCE, "lab", "lab", {"volume_id": "vol-0", "chunk_size": CHUNK})
    _wait_text(events, '"placed"')
    spare_log = root / "spare.log"
    spare = _start(worker, spare_log)
    deadline = time.monotonic() + 300
    while doomed.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the doomed worker did not die")
        time.sleep(0.005)
    died = time.time()
    wait_for(url, PERSISTENCE, job, timeout=600)
    done = time.time()
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    replaced = next(r["t"] for r in rows if r["event"] == "placed" and r.get("attempt") == 2)
    for proc in (conductor, spare):
        proc.terminate()
        proc.wait(timeout=60)
    _cleanup(namespace, [job])
    shutil.rmtree(root / "store", ignore_errors=True)
    return {
        "worker_death_to_resubmission_s": round(replaced - died, 2),
        "worker_death_to_job_done_s": round(done - died, 2),
        "load_before": load_before,
        "load_after": _load(),
    }


def _database() -> None:
    """Create the bench's own database if it is missing."""
    import sqlalchemy  # noqa: PLC0415

    base, _, name = PERSISTENCE.rpartition("/")
    engine = sqlalchemy.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        query = sqlalchemy.text("select 1 from pg_database where datname = :n")
        if conn.execute(query, {"n": name}).scalar() is None:
            conn.execute(sqlalchemy.text(f'create database "{name}"'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--conductors", type=int, default=1)
    parser.add_argument(
        "--workers", default="0", help="worker counts to compare, interleaved (e.g. 1,2)"
    )
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--worker-death", action="store_true")
    args = parser.parse_args()
    _database()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` runs
    try:
        _run(args)
    finally:
        for proc in _PROCS:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _run(args: argparse.Namespace) -> None:
    if args.worker_death:
        with _site(64, 1) as (root, config):
            for _ in range(args.trials):
                print(json.dumps(worker_death(root, config)), flush=True)
        return
    counts = [int(n) for n in args.workers.split(",")]
    with _site(args.size_mib, args.jobs) as (root, config):
        for _ in range(args.trials):
            for workers in counts:
                print(json.dumps(run_jobs(root, config, args, workers)), flush=True)
        in_process = time.monotonic()
        backup(
            Backend.of("lab", FileDriver(root / "volumes")),
            Store("clean", PosixStore(root / "clean")),
            BackupRequest("vol-0", chunk_size=CHUNK),
        )
        in_process = time.monotonic() - in_process
    print(json.dumps({"in_process_backup_seconds": round(in_process, 3), "load": _load()}))


if __name__ == "__main__":
    main()
