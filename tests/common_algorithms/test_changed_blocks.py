"""Incremental backups through changed-blocks: read only what changed, never trust a
token that another backend issued.

`JournalFileDriver` (tests/support/tracking.py) is a real file driver whose
change tokens are generation numbers; the rbd driver's incrementals against
the real cluster are in test_store_matrix.py and tests/drivers/test_rbd.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    restore,
)
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import StoreSpec, VolumeRef
from tests.support.tracking import JournalFileDriver

CHUNK = 64 * 1024


def make(tmp_path: Path, name: str) -> tuple[Backend, JournalFileDriver]:
    path = tmp_path / name
    path.mkdir()
    driver = JournalFileDriver(path)
    return Backend.of(name, driver), driver


def make_store(tmp_path: Path) -> Store:
    path = tmp_path / "store"
    return Store("s", PosixStore(path), StoreSpec("s", "posix", {"path": str(path)}))


def test_incremental_reads_only_the_changed_chunks(tmp_path: Path) -> None:
    """After one chunk is rewritten in place, the incremental reads that chunk alone."""
    backend, driver = make(tmp_path, "a")
    store = make_store(tmp_path)
    data = bytearray(os.urandom(CHUNK * 16))
    driver.write_volume(VolumeRef("vol"), bytes(data))
    request = BackupRequest("vol", in_use=True, incremental=True, chunk_size=CHUNK)
    full = backup(backend, store, request)
    assert full.bytes_read == len(data)
    change = os.urandom(100)
    driver.write_in_place("vol", 5 * CHUNK + 10, change)
    data[5 * CHUNK + 10 : 5 * CHUNK + 110] = change
    incr = backup(
        backend, store, BackupRequest("vol", in_use=True, incremental=True, chunk_size=CHUNK)
    )
    assert incr.parent == full.backup_id
    assert incr.guard is not None and incr.guard.chunks_checked == 1  # 1% of 15, at least 1
    assert incr.bytes_read == CHUNK + incr.guard.bytes_reread
    assert incr.enhancers_used["changed-blocks"] == 14 * CHUNK
    restore(backend, store, RestoreRequest(incr.backup_id, "back"))
    assert driver.read_range(VolumeRef("back"), 0, len(data)) == data


def test_a_parent_from_another_backend_is_read_in_full(tmp_path: Path) -> None:
    """The latest backup of a same-named volume of another backend gives no change token.

    Both backends issue the token ``gen-1`` for different data: trusting the
    parent's token would reuse the other volume's chunks and back up the
    wrong bytes.
    """
    a, driver_a = make(tmp_path, "a")
    b, driver_b = make(tmp_path, "b")
    store = make_store(tmp_path)
    driver_a.write_volume(VolumeRef("vol"), os.urandom(CHUNK * 8))
    data_b = os.urandom(CHUNK * 8)
    driver_b.write_volume(VolumeRef("vol"), data_b)
    request = BackupRequest("vol", in_use=True, incremental=True, chunk_size=CHUNK)
    backup(a, store, request)
    out = backup(b, store, BackupRequest("vol", in_use=True, incremental=True, chunk_size=CHUNK))
    assert out.bytes_read == len(data_b)
    restore(b, store, RestoreRequest(out.backup_id, "back"))
    got = driver_b.read_range(VolumeRef("back"), 0, len(data_b))
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data_b).hexdigest()
