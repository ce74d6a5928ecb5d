"""Copies between stores: posix, Swift and S3, plain and encrypted in every combination."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from pieceworks.common_algorithms.format.manifest import (
    BackupExists,
    list_backup_ids,
    read_manifest,
    write_manifest,
)
from pieceworks.common_algorithms.keys import KdfParams, init_keys, unlock
from pieceworks.common_algorithms.operations.copy import copy_backups
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import (
    BackupNotFound,
    CorruptionError,
    IObjectStore,
    ObjectStore,
    StoreSpec,
)
from pieceworks.protocols.chunks import chunk_key
from pieceworks.protocols.encrypted_store import EncryptedStore
from pieceworks.protocols.values import ObjectInfo
from tests.common_algorithms.conftest import CHUNK, mixed_data, put_volume, sha, volume_sha
from tests.fixtures.swift_server import SwiftServer
from tests.support.remote_stores import s3_store, swift_store

FAST = KdfParams(n=1 << 10)
KINDS = ("posix", "swift", "s3")
#: (source, target) kinds: every kind is a source and a target at least once.
PAIRS = (("posix", "swift"), ("swift", "s3"), ("s3", "posix"), ("posix", "posix"))
CRYPTO = (("plain", "plain"), ("plain", "sealed"), ("sealed", "plain"), ("sealed", "sealed"))

MakeStore = Callable[[str, str, str], Store]


@pytest.fixture
def make_store(tmp_path: Path, request: pytest.FixtureRequest) -> MakeStore:
    """``make_store(name, kind, crypto)``: a fresh store; ``sealed`` ones get their own key."""

    def make(name: str, kind: str, crypto: str) -> Store:
        raw: IObjectStore
        if kind == "posix":
            raw = PosixStore(tmp_path / name)
        else:
            server: SwiftServer = request.getfixturevalue("swift_server")
            raw = swift_store(server) if kind == "swift" else s3_store(server)
        if crypto == "sealed":
            init_keys(raw, f"passphrase of {name}", FAST)
            raw = EncryptedStore(raw, unlock(raw, f"passphrase of {name}"))
        return Store(name, raw, StoreSpec(name, kind, {}))

    return make


@pytest.mark.parametrize(("source_kind", "target_kind"), PAIRS)
@pytest.mark.parametrize(("source_crypto", "target_crypto"), CRYPTO)
def test_copied_backups_verify_and_restore_in_the_target_alone(
    file_backend: Backend,
    make_store: MakeStore,
    source_kind: str,
    target_kind: str,
    source_crypto: str,
    target_crypto: str,
) -> None:
    """Full and incremental backups copy over; a second copy sends nothing; restores match."""
    source = make_store("a", source_kind, source_crypto)
    target = make_store("b", target_kind, target_crypto)
    data = mixed_data(blocks=8)
    put_volume(file_backend, "vol", data)
    full = backup(file_backend, source, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    changed = bytearray(data)
    changed[:16] = b"changed--changed"
    put_volume(file_backend, "vol", bytes(changed))
    incremental = backup(
        file_backend, source, BackupRequest(volume_id="vol", chunk_size=CHUNK, incremental=True)
    )

    first = copy_backups(source, target)
    assert first.backups_copied == (full.backup_id, incremental.backup_id)
    assert first.chunks_copied == len(read_manifest(source.objects, full.backup_id).digests()) + 1
    again = copy_backups(source, target)
    assert again.backups_copied == () and again.chunks_copied == 0
    assert again.backups_skipped == (full.backup_id, incremental.backup_id)

    for backup_id, expected in ((full.backup_id, data), (incremental.backup_id, changed)):
        assert verify(target, backup_id).ok
        restore(file_backend, target, RestoreRequest(backup_id, f"copy-{backup_id}"))
        assert volume_sha(file_backend.driver, f"copy-{backup_id}") == sha(bytes(expected))  # type: ignore[arg-type]
    same_ids = (source_crypto, target_crypto) == ("plain", "plain")
    source_ids = read_manifest(source.objects, full.backup_id).digests()
    assert (read_manifest(target.objects, full.backup_id).digests() == source_ids) is same_ids


class _Interrupted(Exception):
    pass


class _DiesAfter(ObjectStore):
    """A real posix store whose process "dies" (raises) at the n-th chunk put."""

    def __init__(self, inner: PosixStore, puts: int) -> None:
        self.inner, self.left = inner, puts

    def put(self, key: str, data: bytes | memoryview) -> None:
        if key.startswith("chunks/"):
            self.left -= 1
            if self.left < 0:
                raise _Interrupted(key)
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)


def test_an_interrupted_copy_leaves_no_partial_backup_and_completes_when_run_again(
    file_backend: Backend, make_store: MakeStore, tmp_path: Path
) -> None:
    """Manifest last: stopped after two chunks, the target has no backup; rerun finishes it."""
    source = make_store("a", "posix", "sealed")
    put_volume(file_backend, "vol", mixed_data(blocks=12))
    out = backup(file_backend, source, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    target_dir = PosixStore(tmp_path / "b")
    dying = Store("b", _DiesAfter(target_dir, 2), StoreSpec("b", "posix", {}))
    with pytest.raises(_Interrupted):
        copy_backups(source, dying, threads=1)
    assert list_backup_ids(target_dir) == []
    assert len(list(target_dir.list("chunks/"))) == 2
    assert list(target_dir.list("leases/")) == []
    target = Store("b", target_dir, StoreSpec("b", "posix", {}))
    again = copy_backups(source, target)
    assert again.backups_copied == (out.backup_id,) and again.chunks_skipped == 2
    assert verify(target, out.backup_id).ok


def test_a_damaged_source_chunk_is_never_copied(
    file_backend: Backend, make_store: MakeStore
) -> None:
    """Each chunk is checked against its id on the way: corruption stops that backup."""
    source = make_store("a", "posix", "plain")
    target = make_store("b", "posix", "sealed")
    put_volume(file_backend, "vol", mixed_data(blocks=8))
    out = backup(file_backend, source, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    ref = read_manifest(source.objects, out.backup_id).chunks[-1]
    stored = bytearray(source.objects.get(chunk_key(ref.digest)))
    stored[-1] ^= 0xFF
    source.objects.put(chunk_key(ref.digest), bytes(stored))
    with pytest.raises(CorruptionError, match=f"offset {ref.offset}"):
        copy_backups(source, target)
    assert list_backup_ids(target.objects) == []


def test_selection_and_refusals(file_backend: Backend, make_store: MakeStore) -> None:
    """Ids and --volume select; an unknown id copies nothing; a clashing id is refused."""
    source = make_store("a", "posix", "plain")
    target = make_store("b", "posix", "plain")
    put_volume(file_backend, "v1", mixed_data(blocks=4))
    put_volume(file_backend, "v2", mixed_data(blocks=4))
    one = backup(file_backend, source, BackupRequest(volume_id="v1", chunk_size=CHUNK))
    two = backup(file_backend, source, BackupRequest(volume_id="v2", chunk_size=CHUNK))
    with pytest.raises(BackupNotFound):
        copy_backups(source, target, [one.backup_id, "bk-missing"])
    assert list_backup_ids(target.objects) == []
    assert copy_backups(source, target, volume_id="v2").backups_copied == (two.backup_id,)
    clash = read_manifest(source.objects, two.backup_id)
    other = make_store("c", "posix", "plain")
    write_manifest(other.objects, clash.__class__(**{**clash.__dict__, "backup_id": one.backup_id}))
    with pytest.raises(BackupExists, match=one.backup_id):
        copy_backups(source, other, [one.backup_id])
    with pytest.raises(ValueError, match="onto itself"):
        copy_backups(source, source)
