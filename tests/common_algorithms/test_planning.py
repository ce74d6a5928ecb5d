"""Plans read a driver's capabilities and explain every strategy."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    NoEligibleStrategy,
    RestoreRequest,
    Store,
    backup_flow,
    plan_backup,
    plan_restore,
    register_backend,
)
from pieceworks.protocols import (
    Compress,
    ConfigError,
    InvalidDriver,
    Snapshot,
    SnapshotRef,
    UnsupportedCodec,
    VolumeRef,
)
from pieceworks.registry import Registry


def test_file_driver_plan_when_not_in_use(file_backend: Backend, store: Store) -> None:
    """Without push, offload is ineligible; an idle volume is read directly, with
    snapshot-stream as the fallback; in use, the snapshot comes first."""
    plan = plan_backup(file_backend, store, BackupRequest("vol"))
    assert [(s.name, s.eligible) for s in plan.strategies] == [
        ("offload", False),
        ("direct-stream", True),
        ("snapshot-stream", True),
    ]
    assert plan.chosen == "direct-stream"
    assert plan.strategies[0].reason == "the backend has no push-to-object-store"
    assert plan.strategies[1].enhancers == ("allocated-extents",)
    in_use = plan_backup(file_backend, store, BackupRequest("vol", in_use=True))
    assert in_use.eligible == ("snapshot-stream",)
    assert BackupRequest("vol", strategies=("snapshot-stream",)).strategies == ("snapshot-stream",)


def test_in_use_without_force_refuses_direct_stream(file_backend: Backend, store: Store) -> None:
    """A volume in use is never read directly unless force is set, and the plan says so."""
    plan = plan_backup(file_backend, store, BackupRequest("vol", in_use=True))
    direct = plan.strategies[2]
    assert not direct.eligible
    assert direct.reason == "the volume is in use and force is not set"
    forced = plan_backup(file_backend, store, BackupRequest("vol", in_use=True, force=True))
    assert forced.strategies[2].eligible
    assert forced.strategies[2].reason == "forced: the volume is read while in use (recorded)"
    assert "force is set" in forced.notes[0]


def test_plan_json_text_and_dot(file_backend: Backend, store: Store) -> None:
    """A plan serialises to the documented JSON shape, text and Graphviz dot."""
    plan = plan_backup(file_backend, store, BackupRequest("vol", in_use=True))
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["operation"] == "backup" and data["chosen"] == "snapshot-stream"
    assert [s["name"] for s in data["strategies"]] == [
        "offload",
        "snapshot-stream",
        "direct-stream",
    ]
    assert set(data["strategies"][0]) >= {"name", "eligible", "reason"}
    assert "-> snapshot-stream" in plan.format_text()
    dot = plan.to_dot()
    assert dot.startswith('digraph "backup"') and '"request" -> "snapshot-stream"' in dot


def test_restore_plan(file_backend: Backend, store: Store) -> None:
    """The file driver restores by stream-in; offload needs pull-from-object-store."""
    plan = plan_restore(file_backend, store, RestoreRequest("bk-1", "vol"))
    assert plan.chosen == "stream-in"
    assert plan.strategies[0].reason == "the backend has no pull-from-object-store"


class SnapshotOnly(Snapshot):
    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        return SnapshotRef(volume.volume_id, snapshot_id)

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        pass


class CompressOnly(Compress):
    def compression_codecs(self) -> Sequence[str]:
        return ("zstd",)


def test_a_backend_that_completes_no_strategy_is_refused(store: Store) -> None:
    """Registration names what would complete a backup; planning names every reason."""
    backend = Backend.of("snaps", SnapshotOnly())
    with pytest.raises(InvalidDriver) as err:
        register_backend(Registry(), backend, store)
    assert str(err.value) == (
        "backend 'snaps' completes no backup strategy: it provides [snapshot]; a driver would"
        " need push-to-object-store (offload), snapshot + stream-out (snapshot-stream) or"
        " stream-out (direct-stream)"
    )
    with pytest.raises(NoEligibleStrategy) as no:
        backup_flow(backend, store, BackupRequest("vol"))
    message = str(no.value)
    assert message.startswith("no backup strategy can run on backend 'snaps': offload: ")
    assert "snapshot-stream: the backend has no stream-out" in message
    assert (
        "a driver would need: push-to-object-store (offload), or stream-out (direct-stream),"
        " or snapshot + stream-out (snapshot-stream)" in message
    )


def test_restore_only_registration_is_refused_for_a_compress_only_driver(store: Store) -> None:
    """A driver with nothing to restore with is refused for restore too."""
    with pytest.raises(InvalidDriver, match="completes no restore strategy"):
        register_backend(
            Registry(), Backend.of("c", CompressOnly()), store, operations=("restore",)
        )


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"volume_id": "../x"}, ValueError, "invalid volume id"),
        ({"volume_id": "v", "codec": "lz4"}, UnsupportedCodec, "unknown codec 'lz4'"),
        ({"volume_id": "v", "chunk_size": 1000}, ConfigError, "chunk size 1000 out of range"),
        ({"volume_id": "v", "strategies": ("teleport",)}, ConfigError, "invalid backup strategy"),
        ({"volume_id": "v", "backup_id": "a/b"}, ValueError, "invalid backup id"),
    ],
)
def test_bad_requests_are_refused_with_what_was_wrong(
    fields: dict[str, object], error: type[Exception], match: str
) -> None:
    """A request is checked before anything runs."""
    with pytest.raises(error, match=match):
        BackupRequest(**fields)  # type: ignore[arg-type]
