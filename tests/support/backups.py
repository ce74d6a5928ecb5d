"""Backups made in-process on a ``PIECEWORKS_HOME``'s built-in backend and store.

The command-line tests of ``forget``, ``show``, ``stats``, ``check`` and
``diff`` need several real backups to work on; making each through its own
``pieceworks backup`` process costs seconds on a busy machine, so they are
made here with the same algorithm (`common_algorithms.operations.backup`) on the same
file driver and POSIX store the command uses by default. The command under
test still runs in its own process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from pieceworks.common_algorithms import Backend, BackupOutcome, BackupRequest, Store, backup
from pieceworks.common_algorithms.format.manifest import manifest_key, read_manifest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import StoreSpec

__all__ = [
    "home_backend",
    "home_store",
    "make_backup",
    "other_backend_backup",
    "set_created",
    "two_backends_config",
    "write_blocks",
]

KiB = 1024


def home_backend(home: Path) -> Backend:
    """The built-in backend ``local`` of `home` (file driver on ``volumes/``)."""
    (home / "volumes").mkdir(parents=True, exist_ok=True)
    return Backend.of("local", FileDriver(home / "volumes"))


def home_store(home: Path) -> Store:
    """The built-in store ``local`` of `home` (POSIX store on ``backups/``)."""
    path = home / "backups"
    return Store("local", PosixStore(path), StoreSpec("local", "posix", {"path": str(path)}))


def write_blocks(home: Path, volume: str, blocks: list[bytes | None], block: int) -> Path:
    """Write `volume` as `blocks` of `block` bytes: each is repeated from its bytes, or zeros."""
    path = home / "volumes" / volume
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for b in blocks:
            f.write(bytes(block) if b is None else (b * (block // len(b) + 1))[:block])
    return path


def make_backup(
    home: Path,
    volume: str,
    *,
    size: int = 256 * KiB,
    seed: int = 0,
    chunk_size: int = 64 * KiB,
    labels: Mapping[str, str] | None = None,
    incremental: bool = False,
    fresh: bool = True,
    codec: str = "zstd",
) -> BackupOutcome:
    """Back up `volume` (rewritten with random data of `seed` if `fresh`) and return the outcome."""
    path = home / "volumes" / volume
    if fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        rnd = os.urandom(size) if seed < 0 else _seeded(seed, size)
        path.write_bytes(rnd)
    request = BackupRequest(
        volume,
        chunk_size=chunk_size,
        labels=dict(labels or {}),
        incremental=incremental,
        codec=codec,
    )
    return backup(home_backend(home), home_store(home), request)


def _seeded(seed: int, size: int) -> bytes:
    import random  # noqa: PLC0415

    return random.Random(seed).randbytes(size)


def set_created(home: Path, backup_id: str, when: datetime) -> None:
    """Move a backup's creation time (rewrites its manifest in the store)."""
    store = PosixStore(home / "backups")
    m = read_manifest(store, backup_id)
    store.delete(manifest_key(backup_id))
    store.put(manifest_key(backup_id), dataclasses.replace(m, created=when.timestamp()).to_json())


def two_backends_config(tmp_path: Path, home: Path) -> Path:
    """A configuration file: backends ``local`` (`home`'s) and ``other``, one store ``local``.

    ``other`` is a file backend on ``tmp_path/other``; flows run without persistence.
    """
    path = tmp_path / "two-backends.toml"
    path.write_text(
        f"""[backends.local]
driver = "file"
path = "{home / "volumes"}"
[backends.other]
driver = "file"
path = "{tmp_path / "other"}"
[stores.local]
driver = "posix"
path = "{home / "backups"}"
[engine]
persistence = "memory://"
""",
        encoding="utf-8",
    )
    return path


def other_backend_backup(tmp_path: Path, home: Path, volume: str) -> BackupOutcome:
    """A backup of `volume` of backend ``other`` (`two_backends_config`) into `home`'s store."""
    (tmp_path / "other").mkdir(exist_ok=True)
    (tmp_path / "other" / volume).write_bytes(bytes(range(256)) * 1024)
    return backup(
        Backend.of("other", FileDriver(tmp_path / "other")),
        home_store(home),
        BackupRequest(volume, chunk_size=64 * KiB),
    )
