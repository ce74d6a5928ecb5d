"""Any backup restores through any driver, whichever store holds it.

Every backup-capable driver (file, qcow2, remote, and rbd on the real Ceph
cluster the tests start) backs an in-use volume up into every store (posix,
and Swift through both its APIs: swift and s3, served by the real Swift the
tests start); each backup then restores through every driver able to take
one (file, qcow2 and rbd by stream-in, remote by pulling from the store
itself), byte for byte. An rbd incremental into every store reads only the
object that changed (changed-blocks).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    restore,
    verify,
)
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.qcow2 import Qcow2Driver
from pieceworks.drivers.rbd import RbdDriver
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.drivers.store_opener import open_store
from pieceworks.protocols import StoreSpec
from tests.fixtures.ceph_cluster import CephCluster
from tests.fixtures.swift_server import SwiftServer
from tests.support.targets import running_target
from tests.support.volumes import digest, put

CHUNK = 256 * 1024
DRIVERS = ("file", "qcow2", "remote", "rbd")
STORES = ("posix", "swift", "s3")
#: How each driver backs up an in-use volume and restores.
BACKUP_STRATEGY = {
    "file": "snapshot-stream",
    "qcow2": "snapshot-stream",
    "remote": "offload",
    "rbd": "snapshot-stream",
}
RESTORE_STRATEGY = {
    "file": "stream-in",
    "qcow2": "stream-in",
    "remote": "offload",
    "rbd": "stream-in",
}
OBJECT = 4 << 20  # RBD's object size


def content() -> bytes:
    text = b"2026-11-27 INFO object store matrix ok\n" * (CHUNK // 8)
    return os.urandom(CHUNK * 2) + bytes(CHUNK * 2) + text[: CHUNK * 2] + os.urandom(4096)


@pytest.fixture
def backends(tmp_path: Path, ceph_cluster: CephCluster) -> Iterator[dict[str, Backend]]:
    """One backend of each driver; the remote one is a real target process, the rbd
    one a pool of the real Ceph cluster (its volumes are removed afterwards)."""
    with ExitStack() as stack:
        made: dict[str, Backend] = {}
        for kind in DRIVERS:
            path = tmp_path / kind
            path.mkdir()
            if kind == "rbd":
                ceph = RbdDriver(**ceph_cluster.options())
                stack.callback(ceph.close)
                stack.callback(_remove_volumes, ceph)
                made[kind] = Backend.of(kind, ceph)
            elif kind == "file":
                made[kind] = Backend.of(kind, FileDriver(path))
            elif kind == "qcow2":
                made[kind] = Backend.of(kind, Qcow2Driver(path))
            else:
                made[kind] = Backend.of(
                    kind, RemoteDriver(stack.enter_context(running_target(path)))
                )
        yield made


def _remove_volumes(driver: RbdDriver) -> None:
    for volume in driver.list_volumes():
        driver.delete_volume(volume.volume_id)


def make_store(kind: str, tmp_path: Path, swift: SwiftServer) -> Store:
    name = f"m{uuid.uuid4().hex[:10]}"
    if kind == "posix":
        options = {"path": str(tmp_path / "store")}
    elif kind == "swift":
        options = swift.swift_options(name)
    else:
        options = swift.s3_options(name)
    spec = StoreSpec("matrix", kind, options)
    return Store("matrix", open_store(spec), spec)


@pytest.mark.parametrize("store_kind", STORES)
@pytest.mark.parametrize("source", DRIVERS)
def test_backup_into_every_store_restores_through_every_driver(
    backends: dict[str, Backend],
    swift_server: SwiftServer,
    tmp_path: Path,
    source: str,
    store_kind: str,
) -> None:
    """source driver -> store -> every restoring driver, sha256 equal each time."""
    store = make_store(store_kind, tmp_path, swift_server)
    data = content()
    want = hashlib.sha256(data).hexdigest()
    put(backends[source], "vol", data)
    out = backup(
        backends[source],
        store,
        BackupRequest("vol", in_use=True, chunk_size=CHUNK),
    )
    assert out.strategy == BACKUP_STRATEGY[source], out.plan.format_text()
    assert verify(store, out.backup_id).ok
    for target in DRIVERS:
        back = restore(backends[target], store, RestoreRequest(out.backup_id, f"from-{source}"))
        assert back.strategy == RESTORE_STRATEGY[target]
        assert digest(backends[target], f"from-{source}") == want, (source, store_kind, target)


@pytest.mark.parametrize("store_kind", STORES)
def test_rbd_incremental_reads_only_the_changed_object(
    backends: dict[str, Backend],
    swift_server: SwiftServer,
    ceph_cluster: CephCluster,
    tmp_path: Path,
    store_kind: str,
) -> None:
    """A volume in use, rewritten in one 4 MiB object: the incremental reads that object."""
    store = make_store(store_kind, tmp_path, swift_server)
    ceph = backends["rbd"]
    data = bytearray(content() * 8)[: 2 * OBJECT]
    put(ceph, "vol", bytes(data))
    request = BackupRequest("vol", in_use=True, incremental=True, chunk_size=CHUNK)
    full = backup(ceph, store, request)
    assert full.plan.chosen == "snapshot-stream" and "changed-blocks" in str(full.plan.to_dict())
    change = os.urandom(3 * CHUNK)
    writer_offset = OBJECT + 5 * CHUNK + 17
    ceph_cluster.write_in_place("vol", writer_offset, change)
    data[writer_offset : writer_offset + len(change)] = change
    incr = backup(
        ceph, store, BackupRequest("vol", in_use=True, incremental=True, chunk_size=CHUNK)
    )
    assert incr.parent == full.backup_id
    assert incr.guard is not None and not incr.guard.lies
    read = incr.bytes_read - incr.guard.bytes_reread  # less the guard's sample
    assert 0 < read <= 4 * CHUNK  # the chunks the write touched, not the volume
    back = restore(ceph, store, RestoreRequest(incr.backup_id, "vol-back"))
    assert back.strategy == "stream-in"
    assert digest(ceph, "vol-back") == hashlib.sha256(data).hexdigest()
