"""A backup that reads more than the user expected says why, in its warnings and its manifest.

Two cases read the whole volume where an incremental would read only the
changes: the backend lost track since the parent (`ChangeTrackingLost`:
an RBD base snapshot deleted on the cluster), and a backend that cannot
record a change-tracking base at all (an RBD pool that is full refuses the
snapshot that holds it). The first read everything with ``warnings: []``;
the second failed the whole backup, which needs no token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pieceworks.cli.commands.show import describe
from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import BackendError, ChangeTrackingLost, Extent, Source, VolumeRef
from tests.support.tracking import TrackingFileDriver

CHUNK = 64 << 10
SIZE = 1 << 20


class _LosesTrack(TrackingFileDriver):
    def changed_extents(self, source: Source, since: str) -> Sequence[Extent]:
        raise ChangeTrackingLost(f"{source}: the base snapshot of {since!r} was deleted")


class _CannotRecord(TrackingFileDriver):
    def change_token(self, source: Source) -> str:
        raise BackendError("cannot create the change-tracking snapshot: the pool is full")


def _setup(tmp_path: Path, driver_class: type[TrackingFileDriver]) -> tuple[Backend, Store]:
    root = tmp_path / "volumes"
    root.mkdir()
    driver = driver_class(root)
    driver.write_volume(VolumeRef("v"), bytes(range(256)) * (SIZE // 256))
    store = Store("s", PosixStore(tmp_path / "store", durable=False))
    return Backend.of("lab", driver), store


def test_an_incremental_whose_backend_lost_track_says_it_read_everything(tmp_path: Path) -> None:
    backend, store = _setup(tmp_path, _LosesTrack)
    first = backup(backend, store, BackupRequest("v", chunk_size=CHUNK))
    assert first.warnings == ()
    request = BackupRequest("v", chunk_size=CHUNK, incremental=True)
    again = backup(backend, store, request)
    assert again.parent == first.backup_id and again.bytes_read == SIZE
    [warning] = again.warnings
    assert f"lost track of the changes since backup {first.backup_id}" in warning
    assert "the base snapshot" in warning and "the whole volume was read" in warning
    assert again.to_dict()["warnings"] == [warning]
    shown = describe(read_manifest(store.objects, again.backup_id), "s")
    assert shown["warnings"] == [warning] and "warnings" not in shown["stats"]


def test_a_backend_that_cannot_record_a_change_token_still_backs_up(tmp_path: Path) -> None:
    backend, store = _setup(tmp_path, _CannotRecord)
    done = backup(backend, store, BackupRequest("v", chunk_size=CHUNK))
    [warning] = done.warnings
    assert "no change-tracking base could be recorded" in warning and "pool is full" in warning
    manifest = read_manifest(store.objects, done.backup_id)
    assert manifest.change_token is None and manifest.size == SIZE
    assert describe(manifest, "s")["warnings"] == [warning]
