"""Backup and restore run for real, choose strategies and fall back on failure."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pieceworks.common_algorithms import (
    AllStrategiesFailed,
    Backend,
    BackupRequest,
    EngineOptions,
    ProgressEvent,
    RestoreRequest,
    Store,
    backup,
    plan_backup,
    restore,
)
from pieceworks.common_algorithms.format.manifest import list_backup_ids, read_manifest
from pieceworks.common_algorithms.operations.backup import abandon_backup
from pieceworks.common_algorithms.operations.backup_tasks import PrepareSource, TakeLease
from pieceworks.protocols import (
    BackendError,
    CorruptionError,
    ShortRead,
    SnapshotRef,
    Source,
    VolumeNotFound,
    VolumeReader,
)
from pieceworks.protocols.chunks import chunk_key
from tests.common_algorithms.conftest import CHUNK, mixed_data, put_volume, sha, volume_sha
from tests.support.backups import make_backup, other_backend_backup
from tests.support.drivers import FailingDriver

Failing = Callable[..., tuple[Backend, FailingDriver]]


def _request(**kw: object) -> BackupRequest:
    return BackupRequest(chunk_size=CHUNK, **kw)  # type: ignore[arg-type]


def test_in_use_volume_is_backed_up_from_a_snapshot(file_backend: Backend, store: Store) -> None:
    """snapshot-stream runs for an in-use volume; the snapshot is gone afterwards."""
    data = mixed_data()
    put_volume(file_backend, "vol", data)
    out = backup(file_backend, store, _request(volume_id="vol", in_use=True))
    assert out.strategy == "snapshot-stream" and out.failed == ()
    assert out.size == len(data)
    assert out.holes > 0 and out.bytes_stored < len(data)
    assert os.listdir(os.path.join(file_backend.driver.root, ".snapshots", "vol")) == []  # type: ignore[attr-defined]
    restored = restore(file_backend, store, RestoreRequest(out.backup_id, "copy"))
    assert restored.strategy == "stream-in"
    assert volume_sha(file_backend.driver, "copy") == sha(data)  # type: ignore[arg-type]
    assert list_backup_ids(store.objects) == [out.backup_id]
    assert not list(store.objects.list("leases/"))


def test_offload_moves_no_data_through_the_manager(failing: Failing, store: Store) -> None:
    """A backend with push writes the chunks itself; restore pulls them back itself."""
    backend, driver = failing()
    data = mixed_data()
    put_volume(backend, "vol", data)
    out = backup(backend, store, _request(volume_id="vol", in_use=True))
    assert out.strategy == "offload" and out.bytes_through_manager == 0
    assert driver.calls == ["push"]
    assert driver.snapshots_alive("vol") == []
    back = restore(backend, store, RestoreRequest(out.backup_id, "copy"))
    assert back.strategy == "offload" and back.bytes_through_manager == 0
    assert volume_sha(driver, "copy") == sha(data)


def test_a_failed_strategy_is_reverted_and_the_next_one_runs(
    failing: Failing, store: Store
) -> None:
    """offload fails -> snapshot-stream runs; the record and the manifest say why."""
    backend, driver = failing("push")
    data = mixed_data()
    put_volume(backend, "vol", data)
    out = backup(backend, store, _request(volume_id="vol", in_use=True))
    assert out.strategy == "snapshot-stream"
    assert [(a.strategy, a.error) for a in out.failed] == [
        ("offload", "BackendError: push to store failed: connection reset")
    ]
    assert driver.calls == ["push", "read-snapshot"]
    assert driver.snapshots_alive("vol") == []
    manifest = read_manifest(store.objects, out.backup_id)
    assert manifest.strategy == "snapshot-stream"
    assert (
        manifest.stats["fallbacks"]
        == "offload: BackendError: push to store failed: connection reset"
    )


def test_each_strategy_falls_back_in_order_and_forced_direct_stream_is_recorded(
    failing: Failing, store: Store
) -> None:
    """offload and snapshot-stream fail; the forced direct-stream produces the backup."""
    backend, driver = failing("push", "read-snapshot")
    data = mixed_data()
    put_volume(backend, "vol", data)
    out = backup(backend, store, _request(volume_id="vol", in_use=True, force=True))
    assert out.strategy == "direct-stream"
    assert [a.strategy for a in out.failed] == ["offload", "snapshot-stream"]
    assert "read error at offset" in out.failed[1].error
    assert driver.calls == ["push", "read-snapshot", "read-volume"]
    assert driver.snapshots_alive("vol") == []
    assert read_manifest(store.objects, out.backup_id).stats["forced"] == "read while in use"
    restore(backend, store, RestoreRequest(out.backup_id, "copy", strategies=("stream-in",)))
    assert volume_sha(driver, "copy") == sha(data)


def test_when_every_strategy_fails_one_error_lists_each_cause(
    failing: Failing, store: Store
) -> None:
    """No manifest, no snapshot, no lease; the error names all three failures in order."""
    backend, driver = failing("push", "read-snapshot", "read-volume")
    put_volume(backend, "vol", mixed_data())
    with pytest.raises(AllStrategiesFailed) as err:
        backup(backend, store, _request(volume_id="vol", in_use=True, force=True))
    assert [a.strategy for a in err.value.attempts] == [
        "offload",
        "snapshot-stream",
        "direct-stream",
    ]
    message = str(err.value)
    assert message.startswith("every backup strategy failed on backend 'lab': offload: ")
    assert driver.snapshots_alive("vol") == []
    assert list_backup_ids(store.objects) == []
    assert not list(store.objects.list("leases/"))
    assert not list(store.objects.list("manifests/"))


def test_unknown_volume_fails_at_once_without_trying_other_strategies(
    file_backend: Backend, store: Store
) -> None:
    """An error every strategy would meet is reported as itself."""
    with pytest.raises(VolumeNotFound):
        backup(file_backend, store, _request(volume_id="nope", in_use=True))
    assert list_backup_ids(store.objects) == []


def test_incremental_uploads_only_changed_chunks(file_backend: Backend, store: Store) -> None:
    """After changing one chunk, an incremental stores about one chunk; restore is whole."""
    data = bytearray(os.urandom(CHUNK * 100))
    put_volume(file_backend, "vol", bytes(data))
    full = backup(file_backend, store, _request(volume_id="vol"))
    data[CHUNK * 50 : CHUNK * 50 + 10] = b"0123456789"
    put_volume(file_backend, "vol", bytes(data))
    incr = backup(file_backend, store, _request(volume_id="vol", incremental=True))
    assert incr.parent == full.backup_id and incr.incremental
    assert incr.chunks_new == 1
    assert incr.bytes_stored <= CHUNK * 1.01 + 64
    os.remove(os.path.join(file_backend.driver.root, "vol"))  # type: ignore[attr-defined]
    restore(file_backend, store, RestoreRequest(incr.backup_id, "vol"))
    assert volume_sha(file_backend.driver, "vol") == sha(bytes(data))  # type: ignore[arg-type]


def test_restore_of_a_corrupt_chunk_names_the_offset_and_writes_nothing(
    file_backend: Backend, store: Store
) -> None:
    """A flipped byte in the store stops the restore; the old target volume is intact."""
    data = os.urandom(CHUNK * 4)
    put_volume(file_backend, "vol", data)
    out = backup(file_backend, store, _request(volume_id="vol"))
    third = read_manifest(store.objects, out.backup_id).chunks[2]
    key = chunk_key(third.digest)
    damaged = bytearray(store.objects.get(key))
    damaged[-1] ^= 0xFF
    store.objects.put(key, bytes(damaged))
    put_volume(file_backend, "target", b"previous content")
    with pytest.raises(CorruptionError) as err:
        restore(file_backend, store, RestoreRequest(out.backup_id, "target", overwrite=True))
    assert err.value.offset == CHUNK * 2
    assert f"at offset {CHUNK * 2}" in str(err.value)
    assert volume_sha(file_backend.driver, "target") == sha(b"previous content")  # type: ignore[arg-type]
    incoming = os.path.join(file_backend.driver.root, ".incoming")  # type: ignore[attr-defined]
    assert not os.path.isdir(incoming) or os.listdir(incoming) == []


def test_restore_falls_back_from_pull_to_stream_in(failing: Failing, store: Store) -> None:
    """A failing pull is recorded and the stream-in restore produces the volume."""
    backend, driver = failing("pull")
    data = mixed_data()
    put_volume(backend, "vol", data)
    out = backup(backend, store, _request(volume_id="vol"))
    back = restore(backend, store, RestoreRequest(out.backup_id, "copy"))
    assert back.strategy == "stream-in"
    assert [(a.strategy, a.error) for a in back.failed] == [
        ("offload", "BackendError: pull from store failed: timeout")
    ]
    assert volume_sha(driver, "copy") == sha(data)


def test_progress_is_reported_through_taskflow_with_bytes(
    file_backend: Backend, store: Store
) -> None:
    """Progress events carry the task name, the fraction and the byte counts."""
    data = mixed_data()
    put_volume(file_backend, "vol", data)
    events: list[ProgressEvent] = []
    backup(file_backend, store, _request(volume_id="vol"), progress=events.append)
    streamed = [e for e in events if e.task.endswith("transfer-chunks") and e.bytes_total]
    assert streamed and streamed[-1].bytes_done == len(data) == streamed[-1].bytes_total
    assert streamed[-1].fraction == 1.0


def test_backup_with_sqlite_persistence(
    file_backend: Backend, store: Store, tmp_path: os.PathLike[str]
) -> None:
    """The embedded default persists every atom in a SQLite file."""
    put_volume(file_backend, "vol", mixed_data())
    db = os.path.join(tmp_path, "pieceworks.db")
    out = backup(
        file_backend,
        store,
        _request(volume_id="vol", in_use=True),
        options=EngineOptions(persistence=f"sqlite:///{db}"),
    )
    assert out.strategy == "snapshot-stream" and os.path.getsize(db) > 0


def test_backup_with_postgresql_persistence(file_backend: Backend, store: Store) -> None:
    """At scale, TaskFlow persists to the real PostgreSQL (fails if it is unreachable)."""
    put_volume(file_backend, "vol", mixed_data())
    out = backup(
        file_backend,
        store,
        _request(volume_id="vol"),
        options=EngineOptions(persistence="postgresql://postgres@127.0.0.1:5432/test"),
    )
    assert out.strategy == "direct-stream"


def test_abandon_undoes_an_interrupted_backup(failing: Failing, store: Store) -> None:
    """After a Ctrl-C (no TaskFlow revert), abandon deletes the snapshot and the lease."""
    backend, driver = failing()
    put_volume(backend, "vol", mixed_data())
    request = _request(volume_id="vol", in_use=True, strategies=("snapshot-stream",))
    plan = plan_backup(backend, store, request)
    prefix = f"backup-{request.backup_id}"
    lease = TakeLease(backend, store, request, prefix).execute()
    PrepareSource(backend, store, request, prefix).execute({"strategy": "snapshot-stream"}, lease)
    assert driver.snapshots_alive("vol") and list(store.objects.list("leases/"))
    abandon_backup(backend, store, request, plan)
    abandon_backup(backend, store, request, plan)  # idempotent
    assert driver.snapshots_alive("vol") == []
    assert not list(store.objects.list("leases/"))


def test_abandon_keeps_cleaning_after_an_error_and_reports_it(
    failing: Failing, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot that cannot be deleted is reported, and the lease is still released."""
    backend, driver = failing()
    put_volume(backend, "vol", mixed_data())
    request = _request(volume_id="vol", in_use=True)
    lease = TakeLease(backend, store, request, "x").execute()
    PrepareSource(backend, store, request, "x").execute({"strategy": "snapshot-stream"}, lease)

    def broken(snapshot: object) -> None:
        raise BackendError("snapshot store offline")

    monkeypatch.setattr(driver, "delete_snapshot", broken)
    with pytest.raises(BackendError, match="snapshot store offline"):
        abandon_backup(backend, store, request, plan_backup(backend, store, request))
    assert not list(store.objects.list("leases/"))


class _SnapshotShrinks(FailingDriver):
    """Each snapshot loses its tail right after it is opened to be read."""

    def open_read(self, source: Source) -> VolumeReader:
        reader = super().open_read(source)
        if isinstance(source, SnapshotRef):
            path = os.path.join(self.root, ".snapshots", source.volume_id, source.snapshot_id)
            os.chmod(path, 0o600)  # snapshots are read-only, even to their owner
            os.truncate(path, 3 * CHUNK + 1)
        return reader


def test_a_short_read_is_final_no_other_strategy_reads_the_changed_source(
    volumes: Path, store: Store
) -> None:
    """snapshot-stream meets a short read: ShortRead, direct-stream never runs, nothing kept."""
    driver = _SnapshotShrinks(volumes, ["push"])
    backend = Backend.of("lab", driver)
    put_volume(backend, "vol", os.urandom(8 * CHUNK))
    with pytest.raises(ShortRead, match=f"short read at offset {3 * CHUNK}: got 1 of {CHUNK}"):
        backup(backend, store, _request(volume_id="vol", in_use=True, force=True))
    assert driver.calls == ["push", "read-snapshot"]  # offload fell back; then it stopped
    assert driver.snapshots_alive("vol") == []
    assert list_backup_ids(store.objects) == []
    assert not list(store.objects.list("leases/"))


def test_an_incremental_builds_on_its_own_backends_volume(tmp_path: Path) -> None:
    """Volume ``db`` of backend ``other`` is another volume than ``db`` of ``local``.

    The incremental's parent was the newest backup of any backend's ``db``:
    the report named ``other``'s backup as the parent of ``local``'s.
    """
    home = tmp_path / "home"
    first = make_backup(home, "db", seed=1)
    theirs = other_backend_backup(tmp_path, home, "db")  # newer, another backend's volume
    assert theirs.backup_id != first.backup_id
    again = make_backup(home, "db", incremental=True, fresh=False)
    assert again.parent == first.backup_id
