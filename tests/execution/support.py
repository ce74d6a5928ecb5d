"""What the execution tests share: test drivers, a jobboard namespace with conductors, helpers.

Everything runs for real: conductors are ``pieceworks conductor`` processes,
the jobboard is the real Redis, persistence the real PostgreSQL. Test-only
drivers reach the conductor processes through a dist-info on PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import PostedJob, post_backup, post_restore
from pieceworks.protocols import BackendError, Source, VolumeReader

REPO = Path(__file__).resolve().parents[2]
PERSISTENCE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CHUNK = 64 * 1024
#: Test drivers, as entry points (group pieceworks.drivers) of a dist-info.
TEST_DRIVERS = {
    "slowfile": "tests.execution.support:SlowFileDriver",
    "leakyfile": "tests.execution.support:LeakyFileDriver",
}


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

    def __init__(
        self, path: str, delay: str = "0.03", api_key: str = "", **unknown: object
    ) -> None:
        super().__init__(path, **unknown)
        self.api_key = api_key  # a secret that must stay in the host's configuration
        self._delay = float(delay)

    def open_read(self, source: Source) -> VolumeReader:
        return _SlowReader(super().open_read(source), self._delay)


class LeakyFileDriver(FileDriver):
    """The file driver whose reads fail with a message quoting its `password` option."""

    def __init__(self, path: str, password: str = "", **unknown: object) -> None:
        super().__init__(path, **unknown)
        self._password = password

    def open_read(self, source: Source) -> VolumeReader:
        raise BackendError(f"cannot log in to the array with password={self._password} as admin")


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

    def config(self, name: str, **sections: dict[str, Any]) -> Path:
        """A configuration file: ``backends={name: spec}``, ``stores={name: spec}``."""
        lines = []
        for table, specs in sections.items():
            for section, spec_ in specs.items():
                lines.append(f"[{table}.{section}]")
                lines.append(f"driver = {json.dumps(spec_['driver'])}")
                lines += [f"{k} = {json.dumps(v)}" for k, v in spec_["options"].items()]
        path = self.tmp / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def conductor(
        self,
        name: str,
        *args: str,
        config: Path,
        env: dict[str, str] | None = None,
        label: str | None = None,
        persistence: str = PERSISTENCE,
        jobboard: str | None = None,
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Start a ``pieceworks conductor`` process; return it and its JSON-lines events file.

        Its log and events files are named after `label` (default `name`): give
        conductors sharing a name each its own. `persistence`, `jobboard`: its
        ``--persistence`` and ``--jobboard`` URLs (default: this board's).
        """
        label = label or name
        events = self.tmp / f"{label}.events.jsonl"
        log = open(self.tmp / f"{label}.log", "wb")  # noqa: SIM115 (closed by the process end)
        command = [sys.executable, "-m", "pieceworks.cli", "-v", "--config", str(config)]
        command += ["conductor", "--jobboard", jobboard or self.url, "--persistence", persistence]
        command += ["--name", name, "--events", str(events), "--wait-timeout", "0.2", *args]
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc, events

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def post_backup(self, backend: str, store: str, **req: Any) -> PostedJob:
        job = post_backup(self.url, PERSISTENCE, backend, store, req)
        self.jobs.append(job)
        return job

    def post_restore(self, backend: str, store: str, **req: Any) -> PostedJob:
        job = post_restore(self.url, PERSISTENCE, backend, store, req)
        self.jobs.append(job)
        return job


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


def slow_config(board: Board, tmp_path: Path, delay: str = "0.03", name: str = "host") -> Path:
    """Backend ``lab`` (the slow file driver over tmp_path/volumes), store ``lab`` (posix)."""
    return board.config(
        name,
        backends={"lab": spec("lab", "slowfile", path=str(tmp_path / "volumes"), delay=delay)},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
