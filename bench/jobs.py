"""Jobs at scale: N backups of SIZE MiB posted on the real Redis, run by K conductor processes.

    python bench/jobs.py --jobs 20 --size-mib 64 --conductors 1
    python bench/jobs.py --jobs 20 --size-mib 1 --conductors 1   # per-job overhead

Prints one JSON object: seconds from the first post until every job is done,
seconds per job, MB/s over all jobs, and for comparison the seconds of the
same backup run in process (``backup()``, no jobboard, no persistence).
Needs Redis at 127.0.0.1:6379 and PostgreSQL at 127.0.0.1:5432 (db test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import destroy_job_book, post_backup, wait_for

PERSISTENCE = "postgresql://postgres@127.0.0.1:5432/test"
CHUNK = 4 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--conductors", type=int, default=1)
    args = parser.parse_args()
    namespace = f"pw-bench-{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:6379/{namespace}"
    with tempfile.TemporaryDirectory(prefix="pw-bench-jobs-") as tmp:
        root = Path(tmp)
        volumes, store = root / "volumes", root / "store"
        volumes.mkdir()
        for i in range(args.jobs):
            with open(volumes / f"vol-{i}", "wb") as f:
                f.write(os.urandom(args.size_mib * 1024 * 1024))
        config = root / "host.toml"
        config.write_text(
            f'[backends.lab]\ndriver = "file"\npath = "{volumes}"\n'
            f'[stores.lab]\ndriver = "posix"\npath = "{store}"\n'
        )
        command = [sys.executable, "-m", "pieceworks.cli", "--config", str(config), "conductor"]
        command += ["--jobboard", url, "--persistence", PERSISTENCE, "--wait-timeout", "0.1"]
        procs = [
            subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(args.conductors)
        ]
        time.sleep(3)  # conductors up
        started = time.monotonic()
        jobs = [
            post_backup(url, PERSISTENCE, "lab", "lab", {"volume_id": f"vol-{i}"})
            for i in range(args.jobs)
        ]
        for job in jobs:
            wait_for(url, PERSISTENCE, job, timeout=3600)
        seconds = time.monotonic() - started
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        for job in jobs:
            destroy_job_book(PERSISTENCE, job)
        client = redis.Redis()
        keys = list(client.scan_iter(match=f"{namespace}*"))
        if keys:
            client.delete(*keys)
        in_process = time.monotonic()
        backup(
            Backend.of("lab", FileDriver(volumes)),
            Store("clean", PosixStore(root / "clean")),
            BackupRequest("vol-0", chunk_size=CHUNK),
        )
        in_process = time.monotonic() - in_process
    total = args.jobs * args.size_mib * 1024 * 1024
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "size_mib": args.size_mib,
                "conductors": args.conductors,
                "seconds": round(seconds, 2),
                "seconds_per_job": round(seconds / args.jobs, 3),
                "mb_per_s": round(total / seconds / 1e6, 1),
                "in_process_backup_seconds": round(in_process, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
