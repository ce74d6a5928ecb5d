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

__all__ = ["home_backend", "home_store", "make_backup", "set_created", "write_blocks"]

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
