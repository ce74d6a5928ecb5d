"""The rbd driver on a full Ceph pool: reads work, writes fail saying why, cleanups do not wait.

Ceph holds a write to a full pool instead of failing it; librados gives up
after the backend's `timeout`. The driver used to report that as
``TransientError: no volume 'v': ... RBD operation timeout``, and deleting a
snapshot that was never taken (a failed backup's cleanup) waited the whole
timeout and failed too, leaving its run journal behind. A cluster of its own
(`running_ceph`), made full by lowering its full ratio; fails, never skips,
when it cannot start.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import rados
import rbd

from pieceworks.drivers.rbd import RbdDriver
from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    SnapshotRef,
    VolumeNotFound,
    VolumeRef,
)
from tests.fixtures.ceph_cluster import CephCluster, running_ceph

#: Seconds a librados call may take in these tests (the driver's `timeout`).
TIMEOUT = 3


def _osd_dump(client: rados.Rados) -> dict[str, Any]:
    code, out, err = client.mon_command(json.dumps({"prefix": "osd dump", "format": "json"}), b"")
    assert code == 0, err
    dump: dict[str, Any] = json.loads(out)
    return dump


@pytest.fixture(scope="module")
def full() -> Iterator[CephCluster]:
    """A cluster with image ``vol`` (8 MiB of data, snapshot ``s1``) whose pool is full."""
    for cluster in running_ceph(memstore_mib=256):
        client = rados.Rados(conffile=cluster.conf)
        client.connect(timeout=20)
        try:
            with client.open_ioctx(cluster.pool) as ioctx:
                rbd.RBD().create(ioctx, "vol", 16 << 20, old_format=False)
                with rbd.Image(ioctx, "vol") as image:
                    image.write(os.urandom(8 << 20), 0)
                    image.create_snap("s1")
            for ratio in ("nearfull", "backfillfull", "full"):
                command = {"prefix": f"osd set-{ratio}-ratio", "ratio": 0.0001}
                code, _, err = client.mon_command(json.dumps(command), b"")
                assert code == 0, err
            deadline = time.monotonic() + 60
            while True:
                pools = {p["pool_name"]: p["flags_names"] for p in _osd_dump(client)["pools"]}
                if "full" in pools[cluster.pool].split(","):
                    break
                assert time.monotonic() < deadline, f"the pool never became full: {pools}"
                time.sleep(0.5)
        finally:
            client.shutdown()
        yield cluster


@pytest.fixture
def driver(full: CephCluster) -> Iterator[RbdDriver]:
    d = RbdDriver(**full.options(), timeout=str(TIMEOUT))
    try:
        yield d
    finally:
        d.close()


def test_a_full_pool_is_still_read(driver: RbdDriver) -> None:
    """Backing up needs reads: the volume and its snapshot are read as usual."""
    for source in (VolumeRef("vol"), SnapshotRef("vol", "s1")):
        reader = driver.open_read(source)
        try:
            buffer = memoryview(bytearray(4096))
            assert reader.readinto_at(0, buffer) == 4096
        finally:
            reader.close()
        assert driver.allocated_extents(source)
    with pytest.raises(VolumeNotFound, match="no volume 'nothing'"):
        driver.open_read(VolumeRef("nothing"))


def test_a_write_to_a_full_pool_fails_saying_the_pool_is_full(
    driver: RbdDriver, full: CephCluster
) -> None:
    """Not 'no volume': what was being done, the timeout, and that the pool is full."""
    for attempt in (
        lambda: driver.create_snapshot(VolumeRef("vol"), "s2"),
        lambda: driver.create_volume("new", 1 << 20),
        lambda: driver.change_token(VolumeRef("vol")),
        lambda: driver.replicate_to(
            VolumeRef("vol"),
            BackendSpec("peer", "rbd", full.options(full.other_pool)),
            VolumeRef("copy"),
        ),
    ):
        started = time.monotonic()
        with pytest.raises(BackendError) as failed:
            attempt()
        message = str(failed.value)
        assert f"pool '{full.pool}' is full" in message, message
        assert "no volume" not in message, message
        assert type(failed.value) is BackendError  # not transient: retrying at once fails too
        assert time.monotonic() - started < TIMEOUT + 15
    assert driver.snapshot_names(VolumeRef("vol")) == ["s1"]


def test_deleting_a_snapshot_never_taken_writes_nothing_and_does_not_wait(
    driver: RbdDriver,
) -> None:
    """A failed backup's cleanup deletes the snapshot it could not take: at once, no error."""
    started = time.monotonic()
    driver.delete_snapshot(SnapshotRef("vol", "pw-bk-never-taken"))
    driver.delete_snapshot(SnapshotRef("gone", "s1"))
    assert time.monotonic() - started < TIMEOUT
