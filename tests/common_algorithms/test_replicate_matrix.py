"""Every pair of drivers replicates byte for byte, by the best strategy.

The rbd backends are two pools of the real Ceph cluster the tests start
(rbd -> rbd is native: incremental export-diff/import-diff semantics).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from pieceworks.common_algorithms import Backend, ReplicateRequest, Store, replicate
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.qcow2 import Qcow2Driver
from pieceworks.drivers.rbd import RbdDriver
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.protocols import BackendSpec, StoreSpec
from tests.fixtures.ceph_cluster import CephCluster
from tests.support.targets import running_target
from tests.support.volumes import digest, put

KINDS = ("file", "qcow2", "remote", "rbd")
CHUNK = 256 * 1024
#: The strategy each (source, target) pair is expected to use when all works.
EXPECTED = {
    ("file", "file"): "native",
    ("file", "qcow2"): "stream",
    ("file", "remote"): "via-store",
    ("qcow2", "file"): "stream",
    ("qcow2", "qcow2"): "stream",
    ("qcow2", "remote"): "via-store",
    ("remote", "file"): "via-store",
    ("remote", "qcow2"): "via-store",
    ("remote", "remote"): "native",
    ("file", "rbd"): "stream",
    ("qcow2", "rbd"): "stream",
    ("remote", "rbd"): "via-store",
    ("rbd", "file"): "stream",
    ("rbd", "qcow2"): "stream",
    ("rbd", "remote"): "via-store",
    ("rbd", "rbd"): "native",
}


def _remove_volumes(driver: RbdDriver) -> None:
    for volume in driver.list_volumes():
        driver.delete_volume(volume.volume_id)


def data() -> bytes:
    """Random, zero and text blocks; a size qcow2 accepts (whole 512-byte sectors)."""
    text = b"2026-11-27 INFO replicated volume block ok\n" * (CHUNK // 16)
    return os.urandom(CHUNK * 3) + bytes(CHUNK * 2) + text[: CHUNK * 2] + os.urandom(4096)


Make = Callable[[str, str], Backend]


@pytest.fixture
def make(tmp_path: Path, ceph_cluster: CephCluster) -> Iterator[Make]:
    """Build a backend of a kind, each with its own directory (remote: its own process;
    rbd: the source in the cluster's first pool, the target in the second)."""
    with ExitStack() as stack:

        def build(kind: str, name: str) -> Backend:
            path = tmp_path / name
            path.mkdir()
            if kind == "rbd":
                options = ceph_cluster.options(
                    ceph_cluster.pool if name == "src" else ceph_cluster.other_pool
                )
                driver = RbdDriver(**options)
                stack.callback(driver.close)
                stack.callback(_remove_volumes, driver)
                return Backend.of(name, driver, BackendSpec(name, "rbd", options))
            if kind == "file":
                return Backend.of(
                    name, FileDriver(path), BackendSpec(name, "file", {"path": str(path)})
                )
            if kind == "qcow2":
                return Backend.of(
                    name, Qcow2Driver(path), BackendSpec(name, "qcow2", {"path": str(path)})
                )
            url = stack.enter_context(running_target(path))
            return Backend.of(name, RemoteDriver(url), BackendSpec(name, "remote", {"url": url}))

        yield build


@pytest.mark.parametrize("target_kind", KINDS)
@pytest.mark.parametrize("source_kind", KINDS)
def test_every_pair_replicates_byte_for_byte(
    make: Make, tmp_path: Path, source_kind: str, target_kind: str
) -> None:
    """An in-use volume replicates from each driver to each driver; sha256 equal."""
    source, target = make(source_kind, "src"), make(target_kind, "dst")
    store_dir = tmp_path / "store"
    store = Store("s", PosixStore(store_dir), StoreSpec("s", "posix", {"path": str(store_dir)}))
    content = data()
    put(source, "vol", content)
    out = replicate(
        source,
        target,
        ReplicateRequest("vol", target_volume_id="copy", in_use=True, chunk_size=CHUNK),
        store=store,
    )
    assert out.strategy == EXPECTED[source_kind, target_kind], out.plan.format_text()
    assert out.failed == ()
    assert digest(target, "copy") == hashlib.sha256(content).hexdigest()
    if source_kind == target_kind and source_kind in ("remote", "rbd"):  # natively
        assert out.bytes_through_manager == 0


def test_rbd_to_rbd_replicates_again_incrementally(make: Make, ceph_cluster: CephCluster) -> None:
    """A second native replication after a small change is byte for byte, and sends little."""
    source, target = make("rbd", "src"), make("rbd", "dst")
    content = bytearray(data())
    put(source, "vol", bytes(content))
    request = ReplicateRequest("vol", target_volume_id="copy", in_use=True, chunk_size=CHUNK)
    first = replicate(source, target, request)
    assert first.strategy == "native"
    ceph_cluster.write_in_place("vol", CHUNK + 3, b"changed")
    content[CHUNK + 3 : CHUNK + 10] = b"changed"
    again = replicate(  # onto the existing replica: only with overwrite (nothing by surprise)
        source,
        target,
        ReplicateRequest(
            "vol", target_volume_id="copy", in_use=True, chunk_size=CHUNK, overwrite=True
        ),
    )
    assert again.strategy == "native"
    assert first.bytes_sent == len(content) - 2 * CHUNK  # the data, not the zeros
    assert again.bytes_sent is not None and again.bytes_sent <= 4 << 20  # not the volume
    assert digest(target, "copy") == hashlib.sha256(content).hexdigest()
