"""Replication copies a volume or snapshot to another backend, falling back in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from taskflow import engines

from pieceworks.common_algorithms import (
    AllStrategiesFailed,
    Backend,
    NoEligibleStrategy,
    Store,
    register_replication,
)
from pieceworks.common_algorithms.operations.planning import plan_replicate
from pieceworks.common_algorithms.operations.replicate import replicate
from pieceworks.common_algorithms.operations.requests import ReplicateRequest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import (
    BackendSpec,
    ShortRead,
    SnapshotRef,
    Source,
    StoreSpec,
    VolumeReader,
    VolumeRef,
)
from pieceworks.registry import NotFound, Registry
from tests.common_algorithms.conftest import CHUNK, mixed_data, sha, volume_sha
from tests.support.drivers import FailingDriver, StreamOnlyDriver


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return a, b


def _file_backend(name: str, path: Path, driver: object | None = None) -> Backend:
    spec = BackendSpec(name, "file", {"path": str(path)})
    return Backend.of(name, driver or FileDriver(path), spec)


def _request(**kw: object) -> ReplicateRequest:
    return ReplicateRequest(chunk_size=CHUNK, **kw)  # type: ignore[arg-type]


def test_file_to_file_on_one_host_is_native(tmp_path: Path) -> None:
    """Two file backends on one filesystem copy directly; no byte through the manager."""
    a, b = _dirs(tmp_path)
    src, dst = _file_backend("a", a), _file_backend("b", b)
    data = mixed_data()
    FileDriver(a).write_volume(VolumeRef("vol"), data)
    out = replicate(src, dst, _request(volume_id="vol", in_use=True))
    assert out.strategy == "native" and out.bytes_through_manager == 0
    assert volume_sha(FileDriver(b), "vol") == sha(data)
    assert os.listdir(a / ".snapshots" / "vol") == []


def test_stream_copy_is_sparse_and_read_back(tmp_path: Path) -> None:
    """Without a peer spec the stream strategy copies, skipping holes, and checks the target."""
    a, b = _dirs(tmp_path)
    src = _file_backend("a", a)
    dst = Backend.of("b", FileDriver(b))  # no spec: the source cannot reach it directly
    data = mixed_data()
    FileDriver(a).write_volume(VolumeRef("vol"), data)
    out = replicate(src, dst, _request(volume_id="vol", target_volume_id="copy"))
    assert out.strategy == "stream"
    assert out.verified == "every data chunk read back and hashed"
    assert out.plan.strategies[0].reason == "backend 'b' has no spec"
    assert volume_sha(FileDriver(b), "copy") == sha(data)
    assert out.bytes_through_manager < 2 * len(data)  # zero chunks were neither read twice


def test_a_named_snapshot_is_replicated_and_kept(tmp_path: Path) -> None:
    """--snapshot S copies the snapshot's bytes, not the volume's, and S survives."""
    a, b = _dirs(tmp_path)
    files = FileDriver(a)
    old = mixed_data()
    files.write_volume(VolumeRef("vol"), old)
    files.create_snapshot(VolumeRef("vol"), "s1")
    files.write_volume(VolumeRef("vol"), os.urandom(len(old)))
    out = replicate(
        _file_backend("a", a),
        Backend.of("b", FileDriver(b)),
        _request(volume_id="vol", snapshot_id="s1", target_volume_id="w"),
    )
    assert out.snapshot_id == "s1"
    assert volume_sha(FileDriver(b), "w") == sha(old)
    assert files.read_range(SnapshotRef("vol", "s1"), 0, 16) == old[:16]


def test_in_use_source_without_snapshot_is_refused_unless_forced(tmp_path: Path) -> None:
    """Exactly as for backup: no snapshot, in use, no force -> nothing is eligible."""
    a, b = _dirs(tmp_path)
    src = Backend.of("a", StreamOnlyDriver(a))
    dst = Backend.of("b", FileDriver(b))
    req = _request(volume_id="vol", in_use=True)
    plan = plan_replicate(src, dst, None, req)
    assert plan.eligible == ()
    assert plan.strategies[1].reason == (
        "the volume is in use, the source has no snapshot and force is not set"
    )
    with pytest.raises(NoEligibleStrategy):
        replicate(src, dst, req)
    data = mixed_data()
    FileDriver(a).write_volume(VolumeRef("vol"), data)
    out = replicate(src, dst, _request(volume_id="vol", in_use=True, force=True))
    assert out.strategy == "stream"
    assert volume_sha(FileDriver(b), "vol") == sha(data)


def test_each_replication_strategy_falls_back_in_order(tmp_path: Path) -> None:
    """native fails, stream fails half-way, via-store succeeds; all is cleaned up."""
    a, b = _dirs(tmp_path)
    store_dir = tmp_path / "store"
    store = Store("s", PosixStore(store_dir), StoreSpec("s", "posix", {"path": str(store_dir)}))
    source_driver = FailingDriver(a, ["replicate", "read-snapshot"])
    src = _file_backend("a", a, source_driver)
    dst = _file_backend("b", b, FailingDriver(b))
    data = mixed_data()
    source_driver.write_volume(VolumeRef("vol"), data)
    FileDriver(b).write_volume(VolumeRef("vol"), b"old target")
    out = replicate(src, dst, _request(volume_id="vol", in_use=True, overwrite=True), store=store)
    assert out.strategy == "via-store" and out.bytes_through_manager == 0
    assert [a.strategy for a in out.failed] == ["native", "stream"]
    assert out.failed[0].error == "BackendError: peer refused the copy"
    assert volume_sha(FileDriver(b), "vol") == sha(data)
    assert source_driver.snapshots_alive("vol") == []
    assert not list(store.objects.list("leases/"))


def test_when_every_replication_fails_the_target_is_untouched(tmp_path: Path) -> None:
    """All strategies fail: one error with each cause; old target intact, no temp files."""
    a, b = _dirs(tmp_path)
    source_driver = FailingDriver(a, ["replicate", "read-snapshot"])
    src = _file_backend("a", a, source_driver)
    dst = _file_backend("b", b)
    source_driver.write_volume(VolumeRef("vol"), mixed_data())
    FileDriver(b).write_volume(VolumeRef("vol"), b"old target")
    with pytest.raises(AllStrategiesFailed) as err:
        replicate(src, dst, _request(volume_id="vol", in_use=True, overwrite=True))
    assert [x.strategy for x in err.value.attempts] == ["native", "stream"]
    assert volume_sha(FileDriver(b), "vol") == sha(b"old target")
    assert os.listdir(b / ".incoming") == []
    assert source_driver.snapshots_alive("vol") == []


def test_a_manager_finds_replication_by_tag(tmp_path: Path) -> None:
    """register_replication tags the pair; a manager builds and runs the flow it finds."""
    a, b = _dirs(tmp_path)
    registry = Registry()
    src, dst = _file_backend("a", a), _file_backend("b", b)
    register_replication(registry, src, dst)
    data = mixed_data()
    FileDriver(a).write_volume(VolumeRef("vol"), data)
    found = registry.find_one(["live-replicate", "to:b"], backend="a")
    assert found.provides >= {"replicate", "live-replicate", "native-replicate"}
    flow = found.build(volume_id="vol", in_use=True, operation_id="rp-1")
    assert engines.run(flow)["a.replicate-to.b.result"]["strategy"] == "native"
    assert volume_sha(FileDriver(b), "vol") == sha(data)
    with pytest.raises(NotFound):
        registry.find(["replicate", "to:c"])


class _ShrinkingDriver(FileDriver):
    """A file backend whose volume loses its tail right after a reader opens it."""

    def open_read(self, source: Source) -> VolumeReader:
        reader = super().open_read(source)
        os.truncate(os.path.join(self.root, "vol"), 2 * CHUNK + 5)
        return reader


def test_a_source_shrinking_mid_stream_fails_and_commits_nothing(tmp_path: Path) -> None:
    """A short read fails the replication: via-store is not tried, no target, no temp file."""
    a, b = _dirs(tmp_path)
    store_dir = tmp_path / "store"
    store = Store("s", PosixStore(store_dir), StoreSpec("s", "posix", {"path": str(store_dir)}))
    src = Backend.of("a", _ShrinkingDriver(a))
    dst = Backend.of("b", FileDriver(b))  # no spec: stream, then via-store
    FileDriver(a).write_volume(VolumeRef("vol"), os.urandom(8 * CHUNK))
    request = _request(volume_id="vol", force=True, target_volume_id="w")
    assert plan_replicate(src, dst, store, request).eligible == ("stream", "via-store")
    with pytest.raises(ShortRead) as err:  # final: via-store would copy the shrunk volume
        replicate(src, dst, request, store=store)
    assert str(err.value) == (
        f"short read at offset {2 * CHUNK}: got 5 of {CHUNK} bytes; the source"
        f" is shorter than its reported size {8 * CHUNK}"
    )
    assert not (b / "w").exists()
    assert os.listdir(b / ".incoming") == []
    assert not list(store.objects.list("leases/"))
