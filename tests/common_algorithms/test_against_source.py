"""``verify --against-source`` finds what a lying driver left out of a backup."""

from __future__ import annotations

from pathlib import Path

from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup
from pieceworks.common_algorithms.operations.against_source import compare_with_source
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import StoreSpec, VolumeRef
from tests.support.liars import OmitsLastChangedBlock
from tests.support.tracking import TrackingFileDriver

CHUNK = 64 << 10


def _store(tmp_path: Path) -> Store:
    path = tmp_path / "store"
    return Store("s", PosixStore(path, durable=False), StoreSpec("s", "posix", {"path": str(path)}))


def _incremental_after_writes(driver: TrackingFileDriver, store: Store) -> str:
    """Full backup of a 1 MiB volume, two in-place writes, an incremental: its id."""
    driver.write_volume(VolumeRef("v"), bytes(range(256)) * 4096)
    backend = Backend.of("lab", driver)
    backup(backend, store, BackupRequest("v", chunk_size=CHUNK, in_use=True))
    driver.write_in_place("v", 10, b"A" * 100)
    driver.write_in_place("v", 5 * CHUNK + 7, b"B" * 100)
    # The sampling guard off: at its default it may catch a liar itself (a random
    # sample of the skipped chunks) and read everything, leaving nothing to compare.
    request = BackupRequest("v", chunk_size=CHUNK, in_use=True, incremental=True, guard_percent=0)
    done = backup(backend, store, request)
    return done.backup_id


def test_an_honest_incremental_is_identical_to_its_source(tmp_path: Path) -> None:
    """With correct changed blocks, the source and the backup agree, read from a snapshot."""
    root = tmp_path / "volumes"
    root.mkdir()
    driver = TrackingFileDriver(root)
    store = _store(tmp_path)
    backup_id = _incremental_after_writes(driver, store)
    found = compare_with_source(Backend.of("lab", driver), store, backup_id)
    assert found.ok and found.snapshot
    assert found.chunks_compared == 16 and found.bytes_compared == 1 << 20
    assert not list((root / ".snapshots" / "v").iterdir())  # the temporary snapshot is gone


def test_a_changed_block_left_out_is_named_with_its_offset(tmp_path: Path) -> None:
    """The liar omitted the last changed range: the backup verifies chunk by chunk, but
    against the source the chunk of that write differs, at its offset."""
    root = tmp_path / "volumes"
    root.mkdir()
    driver = OmitsLastChangedBlock(root)
    store = _store(tmp_path)
    backup_id = _incremental_after_writes(driver, store)
    found = compare_with_source(Backend.of("lab", driver), store, backup_id)
    assert not found.ok
    assert [(d.offset, d.length) for d in found.differences] == [(5 * CHUNK, CHUNK)]
    assert found.to_dict()["differences"][0]["reason"] == "the chunk differs from the source"
