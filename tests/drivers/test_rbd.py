"""The rbd driver against a real Ceph cluster (one monitor, one memstore OSD).

The cluster is the session fixture `ceph_cluster` (``scripts/ceph/run_ceph.py``);
nothing is mocked. "A VM" writing to a volume is a second librbd client
opened here with the same bindings. Every test uses volume ids of its own,
so tests share the cluster without seeing each other's images.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import rados
import rbd
from zope.interface.verify import verifyObject

from pieceworks.drivers.rbd import RbdDriver
from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    ChangeTrackingLost,
    ConfigError,
    Extent,
    IAllocatedExtents,
    IChangedBlocks,
    InvalidName,
    IReplicateToPeer,
    ISnapshot,
    IStreamIn,
    IStreamOut,
    PieceworksError,
    SnapshotNotFound,
    SnapshotRef,
    VolumeNotFound,
    VolumeRef,
    verify_driver,
)
from tests.fixtures.ceph_cluster import CephCluster

KiB = 1 << 10
MiB = 1 << 20
OBJECT = 4 * MiB  # RBD's default object size


@pytest.fixture
def driver(ceph_cluster: CephCluster) -> Iterator[RbdDriver]:
    made = RbdDriver(**ceph_cluster.options())
    yield made
    made.close()


@pytest.fixture
def other(ceph_cluster: CephCluster) -> Iterator[RbdDriver]:
    """A driver on the cluster's second pool."""
    made = RbdDriver(**ceph_cluster.options(ceph_cluster.other_pool))
    yield made
    made.close()


@pytest.fixture
def client(ceph_cluster: CephCluster) -> Iterator[rados.Ioctx]:
    """A librbd client of our own ("a VM"): an I/O context on the first pool."""
    cluster = rados.Rados(conffile=ceph_cluster.conf, name="client.admin")
    cluster.connect(timeout=20)
    ioctx = cluster.open_ioctx(ceph_cluster.pool)
    yield ioctx
    ioctx.close()
    cluster.shutdown()


def vid(prefix: str = "v") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def hidden_images(ioctx: rados.Ioctx) -> list[str]:
    """Images the driver builds or moves aside (names starting with '.')."""
    return [n for n in rbd.RBD().list(ioctx) if n.startswith(".")]


def vm_write(ioctx: rados.Ioctx, volume_id: str, offset: int, data: bytes) -> None:
    with rbd.Image(ioctx, volume_id) as image:
        image.write(data, offset)


def rbd_diff(ioctx: rados.Ioctx, volume_id: str) -> list[tuple[int, int]]:
    """librbd's own report of the allocated ranges (to check thinness)."""
    out: list[tuple[int, int]] = []
    with rbd.Image(ioctx, volume_id, read_only=True) as image:
        image.diff_iterate(0, image.size(), None, lambda o, n, e: out.append((o, n)) if e else None)
    return out


# -- configuration (no cluster needed) ---------------------------------------------


def test_unknown_and_malformed_options_are_config_errors(tmp_path: Path) -> None:
    """Each misconfiguration is a ConfigError naming the option; nothing is contacted."""
    conf = tmp_path / "ceph.conf"
    conf.write_text("[global]\n")
    with pytest.raises(ConfigError, match="colour"):
        RbdDriver(pool="rbd", colour="red")
    with pytest.raises(ConfigError, match="'pool'"):
        RbdDriver(conf=str(conf))
    with pytest.raises(ConfigError, match="'pool'"):
        RbdDriver(pool="a/b")
    with pytest.raises(ConfigError, match="does not exist"):
        RbdDriver(pool="rbd", conf=str(tmp_path / "missing.conf"))
    with pytest.raises(ConfigError, match="keyring file"):
        RbdDriver(pool="rbd", conf=str(conf), keyring=str(tmp_path / "nokeyring"))
    with pytest.raises(ConfigError, match="'client'"):
        RbdDriver(pool="rbd", client="client.admin")
    with pytest.raises(ConfigError, match="'timeout'"):
        RbdDriver(pool="rbd", timeout="soon")
    assert RbdDriver(pool="rbd", conf=str(conf), timeout="5").options.timeout == 5.0


def test_accepts_only_well_configured_rbd_peers(tmp_path: Path) -> None:
    """Native replication is offered to an rbd backend whose configuration is valid here."""
    conf = tmp_path / "ceph.conf"
    conf.write_text("[global]\n")
    driver = RbdDriver(pool="rbd", conf=str(conf))
    assert driver.accepts_peer(BackendSpec("b", "rbd", {"pool": "x", "conf": str(conf)}))
    assert not driver.accepts_peer(BackendSpec("b", "file", {"path": str(tmp_path)}))
    assert not driver.accepts_peer(BackendSpec("b", "rbd", {"pool": "x", "conf": "/nonexistent"}))
    assert not driver.accepts_peer(BackendSpec("b", "rbd", {"conf": str(conf)}))


def test_unreachable_cluster_is_a_backend_error_in_bounded_time(tmp_path: Path) -> None:
    """A monitor nobody answers on fails the first call with a BackendError, not a hang."""
    conf = tmp_path / "ceph.conf"
    conf.write_text(
        "[global]\nmon host = v2:127.0.0.1:9\nauth client required = none\nms bind msgr1 = false\n"
    )
    driver = RbdDriver(pool="rbd", conf=str(conf), timeout=2)
    with pytest.raises(BackendError, match="cannot connect"):
        driver.list_volumes()


# -- capabilities --------------------------------------------------------------------


def test_every_capability_verifies(driver: RbdDriver) -> None:
    """The driver provides all six capabilities, checked by zope.interface."""
    for iface in (ISnapshot, IStreamOut, IStreamIn, IAllocatedExtents, IChangedBlocks):
        assert verifyObject(iface, driver)
    assert verifyObject(IReplicateToPeer, driver)
    assert len(verify_driver(driver, "ceph")) == 6


def test_write_then_read_round_trip_of_an_unaligned_size(driver: RbdDriver) -> None:
    """A volume of any byte size reads back exactly, in slices of a reused buffer."""
    v = VolumeRef(vid())
    data = os.urandom(5 * MiB) + bytes(3 * MiB) + b"tail-not-aligned"
    driver.write_volume(v, data)
    try:
        assert driver.read_range(v, 0, len(data) + 100) == data
        buffer = bytearray(1 * MiB)
        with closing(driver.open_read(v)) as reader:
            assert reader.size == len(data)
            assert reader.readinto_at(4 * MiB, memoryview(buffer)[10:20]) == 10
            assert bytes(buffer[10:20]) == data[4 * MiB : 4 * MiB + 10]
            assert reader.readinto_at(len(data) - 5, memoryview(buffer)) == 5  # short at the end
            assert reader.readinto_at(len(data), memoryview(buffer)) == 0
    finally:
        driver.delete_volume(v.volume_id)


def test_restored_volume_stays_thin(driver: RbdDriver, client: rados.Ioctx) -> None:
    """Zero ranges written through stream-in are neither written nor allocated."""
    v = VolumeRef(vid())
    writer = driver.open_write(v, 24 * MiB)
    writer.write_at(0, os.urandom(64 * KiB) + bytes(8 * MiB))  # one 4 MiB chunk, mostly zeros
    writer.write_at(16 * MiB, bytes(4 * MiB))  # all zeros
    writer.write_at(20 * MiB + 64 * KiB, b"x" * 100)
    writer.commit()
    try:
        assert rbd_diff(client, v.volume_id) == [(0, 64 * KiB), (20 * MiB, 64 * KiB + 100)]
        assert driver.allocated_extents(v) == [
            Extent(0, 64 * KiB),
            Extent(20 * MiB, 64 * KiB + 100),
        ]
    finally:
        driver.delete_volume(v.volume_id)


def test_commit_replaces_with_exact_size_and_zeros(driver: RbdDriver, client: rados.Ioctx) -> None:
    """A volume replaced by a smaller writer holds just what was written; nothing is left."""
    v = VolumeRef(vid())
    driver.write_volume(v, b"x" * (3 * MiB))
    writer = driver.open_write(v, 1 * MiB + 3)
    writer.write_at(2, b"ab")
    writer.write_at(1 * MiB, memoryview(b"yz"))
    assert driver.read_range(v, 0, 4) == b"xxxx"  # the old content until commit
    writer.commit()
    try:
        assert driver.read_range(v, 0, 4 * MiB) == b"\0\0ab" + bytes(MiB - 4) + b"yz\0"
        assert hidden_images(client) == []
    finally:
        driver.delete_volume(v.volume_id)


def test_abort_leaves_the_old_volume_or_nothing(driver: RbdDriver, client: rados.Ioctx) -> None:
    """Abort keeps an existing volume as it was and never creates a new one."""
    v, new = VolumeRef(vid()), VolumeRef(vid())
    driver.write_volume(v, b"old")
    for target in (v, new):
        writer = driver.open_write(target, 10)
        writer.write_at(0, b"new")
        writer.abort()
        writer.abort()  # idempotent
    try:
        assert driver.read_range(v, 0, 10) == b"old"
        assert new not in driver.list_volumes()
        assert hidden_images(client) == []
    finally:
        driver.delete_volume(v.volume_id)


def test_write_beyond_size_and_negative_size_are_refused(driver: RbdDriver) -> None:
    """The writer never grows the volume past the size it was opened with."""
    writer = driver.open_write(VolumeRef(vid()), 10)
    with pytest.raises(ValueError, match="beyond size"):
        writer.write_at(8, b"abc")
    writer.abort()
    with pytest.raises(ValueError, match="negative"):
        driver.open_write(VolumeRef(vid()), -1)


def test_volume_in_use_is_never_replaced(driver: RbdDriver, client: rados.Ioctx) -> None:
    """Committing over a volume a client has open fails; the volume and the pool stay clean."""
    v = VolumeRef(vid())
    driver.write_volume(v, b"in use")
    with rbd.Image(client, v.volume_id):  # a VM has it open
        writer = driver.open_write(v, 10)
        writer.write_at(0, b"new")
        with pytest.raises(BackendError, match="in use"):
            writer.commit()
    try:
        assert driver.read_range(v, 0, 6) == b"in use"
        assert hidden_images(client) == []
    finally:
        driver.delete_volume(v.volume_id)


def test_snapshot_is_isolated_from_later_writes(driver: RbdDriver, client: rados.Ioctx) -> None:
    """A snapshot reads as the volume did when it was taken, while a VM keeps writing."""
    v = VolumeRef(vid())
    driver.write_volume(v, b"a" * (6 * MiB))
    with rbd.Image(client, v.volume_id) as vm:
        snap = driver.create_snapshot(v, "s1")
        vm.write(b"b" * MiB, 1 * MiB)
        assert driver.read_range(snap, 0, 6 * MiB) == b"a" * (6 * MiB)
        assert driver.read_range(v, MiB, 3) == b"bbb"
        assert driver.allocated_extents(snap) == [Extent(0, 6 * MiB)]
    try:
        with pytest.raises(BackendError, match="s1"):
            driver.create_snapshot(v, "s1")  # never clobbered
        driver.delete_snapshot(snap)
        driver.delete_snapshot(snap)  # idempotent
        driver.delete_snapshot(SnapshotRef(vid(), "s1"))  # unknown volume: nothing to do
        assert driver.snapshot_names(v) == []
    finally:
        driver.delete_volume(v.volume_id)


def test_unknown_ids_raise_the_right_not_found(driver: RbdDriver) -> None:
    """An unknown volume is VolumeNotFound, an unknown snapshot SnapshotNotFound."""
    v = VolumeRef(vid())
    with pytest.raises(VolumeNotFound):
        driver.open_read(v)
    with pytest.raises(VolumeNotFound):
        driver.create_snapshot(v, "s")
    with pytest.raises(VolumeNotFound):
        driver.allocated_extents(v)
    driver.write_volume(v, b"x")
    try:
        named = rf"^no snapshot 'nope' of volume '{v.volume_id}'$"  # not SnapshotRef(...)
        with pytest.raises(SnapshotNotFound, match=named):
            driver.open_read(SnapshotRef(v.volume_id, "nope"))
        with pytest.raises(SnapshotNotFound, match=named):
            driver.change_token(SnapshotRef(v.volume_id, "nope"))
    finally:
        driver.delete_volume(v.volume_id)
    with pytest.raises(InvalidName):
        driver.create_volume("../x", 1)


def test_allocated_extents_of_empty_and_sparse_volumes(driver: RbdDriver) -> None:
    """An empty volume has no extents; a sparse one only where data was written."""
    empty, sparse = driver.create_volume(vid(), 0), driver.create_volume(vid(), 64 * MiB)
    try:
        assert driver.allocated_extents(empty) == []
        assert driver.allocated_extents(sparse) == []
        writer = driver.open_write(sparse, 64 * MiB)
        writer.write_at(40 * MiB, b"z" * OBJECT)
        writer.commit()
        assert driver.allocated_extents(sparse) == [Extent(40 * MiB, OBJECT)]
    finally:
        driver.delete_volume(empty.volume_id)
        driver.delete_volume(sparse.volume_id)


def test_list_volumes_shows_valid_ids_only(driver: RbdDriver, client: rados.Ioctx) -> None:
    """Hidden images (a restore in progress) are no volumes."""
    v = VolumeRef(vid())
    driver.write_volume(v, b"x")
    writer = driver.open_write(VolumeRef(vid()), 1)
    try:
        names = [r.volume_id for r in driver.list_volumes()]
        assert v.volume_id in names
        assert not [n for n in names if n.startswith(".")]
        assert hidden_images(client)  # the writer's image exists but is not listed
    finally:
        writer.abort()
        driver.delete_volume(v.volume_id)


# -- changed-blocks ------------------------------------------------------------------


def test_change_token_of_a_volume_keeps_a_base_and_diffs_from_it(
    driver: RbdDriver, client: rados.Ioctx
) -> None:
    """Object-aligned writes after the token are exactly the changed extents."""
    v = VolumeRef(vid())
    driver.write_volume(v, os.urandom(16 * MiB))
    try:
        token = driver.change_token(v)
        assert [n for n in driver.snapshot_names(v) if n.startswith("pw-base-")]
        vm_write(client, v.volume_id, 4 * MiB, os.urandom(OBJECT))
        vm_write(client, v.volume_id, 12 * MiB, os.urandom(OBJECT))
        assert driver.changed_extents(v, token) == [
            Extent(4 * MiB, OBJECT),
            Extent(12 * MiB, OBJECT),
        ]
    finally:
        driver.delete_volume(v.volume_id)


def test_token_of_a_temporary_snapshot_outlives_it(driver: RbdDriver, client: rados.Ioctx) -> None:
    """Deleting the snapshot a token was taken of renames it to the kept base."""
    v = VolumeRef(vid())
    driver.write_volume(v, os.urandom(8 * MiB))
    try:
        snap = driver.create_snapshot(v, "pw-bk-1-snapshot-stream")
        token = driver.change_token(snap)
        driver.delete_snapshot(snap)
        names = driver.snapshot_names(v)
        assert snap.snapshot_id not in names
        assert len(names) == 1 and names[0].startswith("pw-base-")
        vm_write(client, v.volume_id, 0, os.urandom(OBJECT))
        assert driver.changed_extents(v, token) == [Extent(0, OBJECT)]
    finally:
        driver.delete_volume(v.volume_id)


def test_old_bases_are_removed(driver: RbdDriver) -> None:
    """A diff removes the bases older than its own; a new token keeps the two newest."""
    v = VolumeRef(vid())
    driver.write_volume(v, os.urandom(4 * MiB))
    try:
        first = driver.change_token(v)
        second = driver.change_token(v)
        assert len(driver.snapshot_names(v)) == 2  # the previous base is still needed
        assert driver.changed_extents(v, first) == []
        assert len(driver.snapshot_names(v)) == 2  # until a later diff is past it
        third = driver.change_token(v)
        assert len(driver.snapshot_names(v)) == 3  # at most three while a backup runs
        assert driver.changed_extents(v, second) == []
        assert len(driver.snapshot_names(v)) == 2
        driver.change_token(v)
        driver.change_token(v)  # full backups never diff: the oldest go at the next token
        assert len(driver.snapshot_names(v)) == 3
        with pytest.raises(ChangeTrackingLost):
            driver.changed_extents(v, first)
        assert len(driver.snapshot_names(v)) == 2  # a lost token: the two newest stay
        with pytest.raises(ChangeTrackingLost):
            driver.changed_extents(v, third)
    finally:
        driver.delete_volume(v.volume_id)


def test_a_failed_backup_leaves_the_parents_base(driver: RbdDriver, client: rados.Ioctx) -> None:
    """Token and diff of a backup that then fails: the next one still diffs from the parent."""
    v = VolumeRef(vid())
    driver.write_volume(v, os.urandom(16 * MiB))
    try:
        parent = driver.change_token(v)  # the last good backup's
        vm_write(client, v.volume_id, 4 * MiB, os.urandom(OBJECT))
        driver.change_token(v)  # a backup that diffs from the parent, then dies
        assert driver.changed_extents(v, parent) == [Extent(4 * MiB, OBJECT)]
        vm_write(client, v.volume_id, 12 * MiB, os.urandom(OBJECT))
        driver.change_token(v)  # the next backup, from the same parent
        assert driver.changed_extents(v, parent) == [
            Extent(4 * MiB, OBJECT),
            Extent(12 * MiB, OBJECT),
        ]
    finally:
        driver.delete_volume(v.volume_id)


def test_lost_tracking_is_reported(driver: RbdDriver) -> None:
    """A foreign token, a removed base or a re-created volume raise ChangeTrackingLost."""
    v = VolumeRef(vid())
    driver.write_volume(v, b"x" * MiB)
    try:
        token = driver.change_token(v)
        for bad in ("gen-42", "rbd1:x:y", "other:1:2"):
            with pytest.raises(ChangeTrackingLost):
                driver.changed_extents(v, bad)
        driver.write_volume(v, b"y" * MiB)  # replaced: another image, no snapshots
        with pytest.raises(ChangeTrackingLost, match="another image"):
            driver.changed_extents(v, token)
        token = driver.change_token(v)
        for name in driver.snapshot_names(v):
            with rbd.Image(driver_ioctx(driver), v.volume_id) as image:
                image.remove_snap(name)
        with pytest.raises(ChangeTrackingLost, match="gone"):
            driver.changed_extents(v, token)
    finally:
        driver.delete_volume(v.volume_id)


def driver_ioctx(driver: RbdDriver) -> rados.Ioctx:
    """The driver's own I/O context (to tamper with a volume behind its back)."""
    return driver._cluster.ioctx()


# -- replicate-to-peer ---------------------------------------------------------------


def spec(cluster: CephCluster, pool: str) -> BackendSpec:
    return BackendSpec("peer", "rbd", cluster.options(pool))


def test_native_replication_is_incremental(
    driver: RbdDriver, other: RbdDriver, ceph_cluster: CephCluster, client: rados.Ioctx
) -> None:
    """First copy whole, then only changes; the common snapshot exists on both sides."""
    v = VolumeRef(vid())
    data = os.urandom(8 * MiB) + bytes(8 * MiB) + os.urandom(MiB) + b"end"
    driver.write_volume(v, data)
    peer = spec(ceph_cluster, ceph_cluster.other_pool)
    try:
        first = driver.replicate_to(v, peer, v)
        assert first.size == len(data)
        assert first.bytes_sent == 9 * MiB + 3  # data only, zeros are not sent
        assert other.read_range(v, 0, len(data) + 10) == data
        (common,) = driver.snapshot_names(v)
        assert other.snapshot_names(v) == [common]
        vm_write(client, v.volume_id, 4 * MiB, b"c" * OBJECT)
        with rbd.Image(client, v.volume_id) as vm:
            vm.write_zeroes(0, MiB)
        second = driver.replicate_to(v, peer, v)
        assert second.bytes_sent == OBJECT
        want = bytes(MiB) + data[MiB : 4 * MiB] + b"c" * OBJECT + data[8 * MiB :]
        assert other.read_range(v, 0, len(data)) == want
        (newer,) = driver.snapshot_names(v)
        assert newer != common and other.snapshot_names(v) == [newer]
        assert rbd_diff(driver_ioctx(other), v.volume_id)[-1][0] >= 16 * MiB  # still thin
    finally:
        driver.delete_volume(v.volume_id)
        other.delete_volume(v.volume_id)


def test_replication_puts_back_what_the_target_changed(
    driver: RbdDriver, other: RbdDriver, ceph_cluster: CephCluster
) -> None:
    """Writes made to the replica since the last copy are undone by the next one."""
    v, copy = VolumeRef(vid()), VolumeRef(vid("copy"))
    data = os.urandom(12 * MiB)
    driver.write_volume(v, data)
    peer = spec(ceph_cluster, ceph_cluster.other_pool)
    try:
        driver.replicate_to(v, peer, copy)
        with rbd.Image(driver_ioctx(other), copy.volume_id) as image:
            image.write(b"tampered", 5 * MiB)
            image.resize(20 * MiB)
            image.write(b"grown", 15 * MiB)
        out = driver.replicate_to(v, peer, copy)
        assert 0 < out.bytes_sent <= OBJECT  # what the target changed; the source did not
        assert other.read_range(copy, 0, 32 * MiB) == data
    finally:
        driver.delete_volume(v.volume_id)
        other.delete_volume(copy.volume_id)


def test_a_failed_incremental_copy_leaves_the_target_as_it_was(
    driver: RbdDriver, other: RbdDriver, ceph_cluster: CephCluster, client: rados.Ioctx
) -> None:
    """The target is rolled back when the copy fails after writing (here: its snapshot
    limit refuses the new common snapshot); both sides keep the old common snapshot."""
    v = VolumeRef(vid())
    old = os.urandom(8 * MiB)
    driver.write_volume(v, old)
    peer = spec(ceph_cluster, ceph_cluster.other_pool)
    try:
        driver.replicate_to(v, peer, v)
        source_snaps, target_snaps = driver.snapshot_names(v), other.snapshot_names(v)
        vm_write(client, v.volume_id, 0, os.urandom(2 * OBJECT))
        with rbd.Image(driver_ioctx(other), v.volume_id) as image:
            image.set_snap_limit(1)
        with pytest.raises(BackendError, match="replicate"):
            driver.replicate_to(v, peer, v)
        assert other.read_range(v, 0, 8 * MiB) == old
        assert other.snapshot_names(v) == target_snaps
        assert driver.snapshot_names(v) == source_snaps
        with rbd.Image(driver_ioctx(other), v.volume_id) as image:
            image.remove_snap_limit()
        driver.replicate_to(v, peer, v)  # the pairing survived: the next copy works
        assert other.read_range(v, 0, 8 * MiB) == driver.read_range(v, 0, 8 * MiB)
    finally:
        driver.delete_volume(v.volume_id)
        other.delete_volume(v.volume_id)


def test_replication_follows_a_resize_and_a_snapshot_source(
    driver: RbdDriver, ceph_cluster: CephCluster, client: rados.Ioctx
) -> None:
    """Same pool, another image: a grown source, then a named snapshot of it, copy exactly."""
    v, copy = VolumeRef(vid()), VolumeRef(vid("copy"))
    driver.write_volume(v, b"a" * (5 * MiB))
    peer = spec(ceph_cluster, ceph_cluster.pool)
    try:
        driver.replicate_to(v, peer, copy)
        with rbd.Image(client, v.volume_id) as vm:
            vm.resize(9 * MiB)
            vm.write(b"b" * MiB, 8 * MiB)
        snap = driver.create_snapshot(v, "user-snap")
        vm_write(client, v.volume_id, 0, b"after the snapshot")
        out = driver.replicate_to(snap, peer, copy)
        assert out.size == 9 * MiB and out.bytes_sent <= 2 * OBJECT
        assert (
            driver.read_range(copy, 0, 10 * MiB) == b"a" * (5 * MiB) + bytes(3 * MiB) + b"b" * MiB
        )
        assert "user-snap" in driver.snapshot_names(v)  # a snapshot of the user's stays
    finally:
        driver.delete_volume(v.volume_id)
        driver.delete_volume(copy.volume_id)


def test_replication_refuses_itself_an_unknown_source_and_a_target_in_use(
    driver: RbdDriver, ceph_cluster: CephCluster, client: rados.Ioctx
) -> None:
    """Bad requests fail with clear errors and leave no snapshot behind."""
    v, copy = VolumeRef(vid()), VolumeRef(vid("copy"))
    peer = spec(ceph_cluster, ceph_cluster.pool)
    with pytest.raises(VolumeNotFound):
        driver.replicate_to(v, peer, copy)
    driver.write_volume(v, b"x" * MiB)
    try:
        with pytest.raises(BackendError, match="same image"):
            driver.replicate_to(v, peer, v)
        with pytest.raises(SnapshotNotFound):
            driver.replicate_to(SnapshotRef(v.volume_id, "nope"), peer, copy)
        driver.replicate_to(v, peer, copy)
        vm_write(client, v.volume_id, 0, b"y")
        with (
            rbd.Image(client, copy.volume_id),  # the replica is open by a client
            pytest.raises(BackendError, match="in use"),
        ):
            driver.replicate_to(v, peer, copy)
        assert len(driver.snapshot_names(v)) == 1  # the failed attempt's point is gone
        with pytest.raises(PieceworksError):
            driver.replicate_to(v, BackendSpec("f", "file", {"path": "/tmp"}), copy)
    finally:
        driver.delete_volume(v.volume_id)
        driver.delete_volume(copy.volume_id)


# -- leftovers -------------------------------------------------------------------------


def test_sweep_removes_the_hidden_images_of_dead_writers_only(
    driver: RbdDriver, client: rados.Ioctx
) -> None:
    """A dead writer's image goes, an only copy is renamed back; a live writer's and a
    watched one stay."""
    from pieceworks.drivers._files import owned_tag  # noqa: PLC0415

    live_volume, missing, gone, held = vid(), vid(), vid(), vid()
    host, pid, start, rand = owned_tag().split("-")
    dead_tag = f"{host}-{2**22 + 9}-1-{rand}"  # a pid above pid_max: its process is gone
    dead = f".pw-in.{gone}.{dead_tag}"
    only_copy = f".pw-old.{missing}.{dead_tag}"
    watched = f".pw-in.{held}.{dead_tag}"  # a killed client's watch lingers (30 s)
    for name in (dead, only_copy, watched):
        rbd.RBD().create(client, name, 4096, old_format=False)
    writer = driver.open_write(VolumeRef(live_volume), 4096)
    try:
        with rbd.Image(client, watched):
            [live] = [n for n in hidden_images(client) if n.startswith(f".pw-in.{live_volume}.")]
            assert f".{host}-{pid}-{start}-" in live  # the writer's name says who writes it
            dry = {name: (left, why) for name, left, why in driver.sweep_temporary(dry_run=True)}
            assert dry[dead][0] and dead in hidden_images(client)
            swept = {name: (left, why) for name, left, why in driver.sweep_temporary()}
        assert swept[dead][0] and "died" in swept[dead][1]
        assert not swept[live][0] and "runs" in swept[live][1]
        assert dry[only_copy][0] and "renamed back" in dry[only_copy][1]
        assert swept[only_copy][0] and "renamed back" in swept[only_copy][1]
        assert not swept[watched][0] and "watch" in swept[watched][1]
        left = hidden_images(client)
        assert dead not in left and live in left and only_copy not in left
        assert missing in rbd.RBD().list(client)  # the volume is back
    finally:
        writer.abort()
        driver.delete_volume(missing)
        for name in (only_copy, watched):
            if name in rbd.RBD().list(client):
                rbd.RBD().remove(client, name)
