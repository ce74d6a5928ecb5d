"""Backend pieces from the registry take their request at build time or from the
engine's store, provide a stable result symbol with the plan, keep their names
per registration, and say at find time when no strategy could run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from taskflow import engines
from taskflow.patterns import linear_flow

from pieceworks.common_algorithms import Backend, Store, register_backend, register_replication
from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import VolumeRef
from pieceworks.registry import NoMatch, Registry
from tests.common_algorithms.conftest import mixed_data, sha, volume_sha
from tests.support.drivers import FailingDriver, StreamOnlyDriver


def _registry(backend: Backend, store: Store) -> Registry:
    registry = Registry()
    register_backend(registry, backend, store)
    return registry


def _plan_names(result: dict[str, object]) -> list[tuple[str, bool]]:
    plan = result["plan"]
    assert isinstance(plan, dict)
    return [(s["name"], s["eligible"]) for s in plan["strategies"]]


def test_backup_request_values_come_from_the_store_when_not_given_at_build(
    file_backend: Backend, store: Store, volumes: Path
) -> None:
    """volume_id and in_use put in the engine's store are used (they used to be ignored:
    the old factory needed everything at build time); the result carries the plan."""
    data = mixed_data()
    FileDriver(volumes).write_volume(VolumeRef("vol-1"), data)
    piece = _registry(file_backend, store).find_one(["live-backup"], buildable=True)
    results = engines.run(piece.build(), store={"volume_id": "vol-1", "in_use": True})
    result = results["lab.backup.result"]
    assert result["volume_id"] == "vol-1" and result["strategy"] == "snapshot-stream"
    assert _plan_names(result) == [
        ("offload", False),
        ("snapshot-stream", True),
        ("direct-stream", False),
    ]
    reasons = {s["name"]: s["reason"] for s in result["plan"]["strategies"]}
    assert "push-to-object-store" in reasons["offload"]
    assert results["lab.backup.request"]["backup_id"] == result["backup_id"]
    manifest = store.objects.get(f"manifests/{result['backup_id']}.json")
    assert b'"vol-1"' in manifest


def test_values_given_at_build_time_are_fixed_and_no_longer_required(
    file_backend: Backend, store: Store, volumes: Path
) -> None:
    """A build-time value wins over the store, and describe() stops listing it as required."""
    for vid in ("vol-a", "vol-b"):
        FileDriver(volumes).write_volume(VolumeRef(vid), vid.encode() * 4096)
    piece = _registry(file_backend, store).find_one(["backup"], buildable=True)
    assert piece.describe().requires == ("volume_id",)
    fixed = piece.describe(volume_id="vol-a", backup_id="bk-a")
    assert fixed.requires == ()
    assert "volume_id" not in (fixed.optional or ()) and "in_use" in (fixed.optional or ())
    assert "lab.backup.result" in (fixed.provides or ())
    results = engines.run(
        piece.build(volume_id="vol-a", backup_id="bk-a"), store={"volume_id": "vol-b"}
    )
    assert results["lab.backup.result"]["volume_id"] == "vol-a"
    assert results["lab.backup.result"]["backup_id"] == "bk-a"
    assert results["lab.backup.result"]["strategy"] == "direct-stream"  # not in use


def test_a_failed_strategy_falls_back_and_the_result_records_it(
    failing: Callable[..., tuple[Backend, FailingDriver]], store: Store
) -> None:
    """The plan found in the store drives TaskFlow's retry: offload fails, the next runs."""
    backend, driver = failing("push")
    driver.write_volume(VolumeRef("vol-1"), mixed_data())
    piece = _registry(backend, store).find_one(["fast-backup"], buildable=True)
    result = engines.run(piece.build(in_use=True), store={"volume_id": "vol-1"})[
        "lab.backup.result"
    ]
    assert result["strategy"] == "snapshot-stream"
    assert [f["strategy"] for f in result["failed_strategies"]] == ["offload"]
    assert "connection reset" in result["failed_strategies"][0]["error"]
    assert _plan_names(result)[0] == ("offload", True)
    assert driver.snapshots_alive("vol-1") == []


def test_restore_and_verify_pieces_take_their_ids_from_the_store(
    file_backend: Backend, store: Store, volumes: Path
) -> None:
    """A backup, a restore and a verify from three pieces exchange ids through the store."""
    data = mixed_data()
    files = FileDriver(volumes)
    files.write_volume(VolumeRef("vol-1"), data)
    registry = _registry(file_backend, store)
    flow = linear_flow.Flow("round-trip").add(
        registry.find_one(["backup"], buildable=True).build(backup_id="bk-1"),
        registry.find_one(["restore"], buildable=True).build(volume_id="vol-2"),
        registry.find_one(["verify"], buildable=True).build(),
    )
    results = engines.run(flow, store={"volume_id": "vol-1", "backup_id": "bk-1"})
    restored = results["lab.restore.result"]
    assert restored["strategy"] == "stream-in" and restored["volume_id"] == "vol-2"
    assert _plan_names(restored) == [("offload", False), ("stream-in", True)]
    assert results["lab.verify.result"]["ok"] is True
    assert volume_sha(files, "vol-2") == sha(data)


def test_replicate_piece_takes_its_request_from_the_store(tmp_path: Path) -> None:
    """The replicate piece reads volume_id/in_use from the store and records its plan."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    data = mixed_data()
    FileDriver(a).write_volume(VolumeRef("vol"), data)
    registry = Registry()
    register_replication(registry, Backend.of("a", FileDriver(a)), Backend.of("b", FileDriver(b)))
    piece = registry.find_one(["replicate", "to:b"])
    results = engines.run(piece.build(), store={"volume_id": "vol", "in_use": True})
    result = results["a.replicate-to.b.result"]
    assert result["strategy"] == result["plan"]["chosen"] == "stream"
    assert _plan_names(result)[0][0] == "native"
    assert volume_sha(FileDriver(b), "vol") == sha(data)


def test_two_backends_pieces_in_one_flow_never_collide(tmp_path: Path, store: Store) -> None:
    """Atom names and provided symbols are namespaced by registration: two backends'
    backups of the same volume id run side by side, each result under its own symbol."""
    registry = Registry()
    for name in ("east", "west"):
        (tmp_path / name).mkdir()
        driver = FileDriver(tmp_path / name)
        driver.write_volume(VolumeRef("vol"), name.encode() * 8192)
        register_backend(registry, Backend.of(name, driver), store)
    flow = linear_flow.Flow("both")
    for piece in registry.find(["backup"], buildable=True):
        flow.add(piece.build())
    results = engines.run(flow, store={"volume_id": "vol"})
    east, west = results["east.backup.result"], results["west.backup.result"]
    assert east["backend"] == "east" and west["backend"] == "west"
    assert east["backup_id"] != west["backup_id"]
    twice = linear_flow.Flow("twice").add(
        registry.find_one(["backup"], backend="east").build(namespace="east.backup-1"),
        registry.find_one(["backup"], backend="east").build(namespace="east.backup-2"),
    )
    again = engines.run(twice, store={"volume_id": "vol"})
    assert again["east.backup-1.result"]["backup_id"] != again["east.backup-2.result"]["backup_id"]


def test_find_with_a_request_reports_a_backend_that_cannot_serve_it(
    tmp_path: Path, store: Store
) -> None:
    """A stream-only backend found through slow-backup has no strategy for a volume in use:
    find says so (NotFound with the plan's reasons) instead of failing later at run time."""
    (tmp_path / "plain").mkdir()
    registry = _registry(Backend.of("plain", StreamOnlyDriver(tmp_path / "plain")), store)
    assert registry.find(["slow-backup"], request={"in_use": False})
    with pytest.raises(NoMatch) as miss:
        registry.find(["slow-backup"], request={"volume_id": "vol-1", "in_use": True})
    reason = miss.value.reasons["plain.backup"]
    assert reason.startswith("no backup strategy can run on backend 'plain'")
    assert "snapshot-stream" in reason
    with pytest.raises(NoMatch, match="invalid backup request"):
        registry.find(["slow-backup"], request={"volume_id": "../x"})
    with pytest.raises(NoMatch, match="got an unexpected keyword argument 'volume'"):
        registry.find(["slow-backup"], request={"volume": "vol-1"})
