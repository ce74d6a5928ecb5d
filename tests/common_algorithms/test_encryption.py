"""Encrypted stores: sealed objects, keyed chunk ids, passphrases, and backups through them."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    plan_backup,
    restore,
    verify,
)
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.common_algorithms.keys import (
    KdfParams,
    KeyNotFound,
    KeyRefused,
    NotEncrypted,
    WrongPassword,
    add_key,
    change_password,
    init_keys,
    is_encrypted,
    list_keys,
    remove_key,
    unlock,
)
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import ConfigError, CorruptionError, ObjectStore, StoreSpec
from pieceworks.protocols.chunks import chunk_key, digest_of
from pieceworks.protocols.deferred_sync import IDeferredSync
from pieceworks.protocols.encrypted_store import EncryptedStore, chunk_id_for
from pieceworks.protocols.encryption import SEALED_OVERHEAD, StoreKeys, seal, seal_into, unseal
from pieceworks.protocols.values import ObjectInfo
from tests.common_algorithms.conftest import CHUNK, mixed_data, put_volume, sha, volume_sha

#: A cheap scrypt for tests (the default costs ~0.1 s and 32 MiB per call).
FAST = KdfParams(n=1 << 10)
MARKER = b"PLAINTEXT-MARKER-" * 64


def _keys() -> StoreKeys:
    return StoreKeys.from_master(bytes(range(32)))


def _encrypted(path: Path, password: str = "correct horse") -> tuple[PosixStore, Store]:
    raw = PosixStore(path)
    init_keys(raw, password, FAST)
    sealed = EncryptedStore(raw, unlock(raw, password))
    return raw, Store("vault", sealed, StoreSpec("vault", "posix", {"path": str(path)}))


# -- sealed objects -----------------------------------------------------------------------


def test_a_sealed_object_opens_only_with_its_key_and_name() -> None:
    """AES-GCM with the object's name as associated data: key, name and bytes all count."""
    keys = _keys()
    sealed = seal(keys, "manifests/bk-1.json", b"content")
    assert len(sealed) == len(b"content") + SEALED_OVERHEAD
    assert b"content" not in sealed
    assert unseal(keys, "manifests/bk-1.json", sealed) == b"content"
    assert seal(keys, "x", b"same") != seal(keys, "x", b"same")  # a fresh nonce each time
    with pytest.raises(CorruptionError, match=r"manifests/bk-2\.json"):
        unseal(keys, "manifests/bk-2.json", sealed)  # moved to another name
    with pytest.raises(CorruptionError, match="authentication failed"):
        unseal(StoreKeys.from_master(bytes(32)), "manifests/bk-1.json", sealed)
    with pytest.raises(CorruptionError, match="not a sealed object"):
        unseal(keys, "manifests/bk-1.json", b"PWC\x02plain")


@pytest.mark.parametrize("position", [0, 3, 4, 10, 16, 20, -17, -1])
def test_every_flipped_bit_of_a_sealed_object_is_refused(position: int) -> None:
    """Header, nonce, ciphertext and tag: one flipped bit anywhere is corruption."""
    keys = _keys()
    sealed = bytearray(seal(keys, "chunks/aa/x", b"some chunk bytes"))
    sealed[position] ^= 0x01
    with pytest.raises(CorruptionError):
        unseal(keys, "chunks/aa/x", bytes(sealed))
    with pytest.raises(CorruptionError):
        unseal(keys, "chunks/aa/x", bytes(sealed[:-1]))


def test_keyed_chunk_ids_are_stable_but_reveal_no_plain_hash() -> None:
    """HMAC-SHA256 under the store's id key: equal data, equal id; not the sha256."""
    keys = _keys()
    data = b"candidate data an attacker might hold"
    assert keys.chunk_id(data) == keys.chunk_id(bytearray(data)) == keys.chunk_id(memoryview(data))
    assert keys.chunk_id(data) != digest_of(data)
    assert keys.chunk_id(data) != StoreKeys.from_master(bytes(32)).chunk_id(data)
    chunk_key(keys.chunk_id(data))  # a valid chunk name
    assert repr(keys) == str(keys) == "StoreKeys(<secret>)"  # no key material when printed


# -- passphrases --------------------------------------------------------------------------


def test_init_unlock_and_wrong_passphrase(tmp_path: Path) -> None:
    """One key file wraps the master key; the wrong passphrase touches nothing."""
    raw = PosixStore(tmp_path / "s")
    assert not is_encrypted(raw)
    with pytest.raises(NotEncrypted):
        unlock(raw, "x")
    key_id = init_keys(raw, "p1", FAST)
    assert is_encrypted(raw) and [k.key_id for k in list_keys(raw)] == [key_id]
    doc = json.loads(raw.get(f"keys/{key_id}.json"))
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] == FAST.n
    assert doc["cipher"] == "aes-256-gcm"
    before = sorted(raw.list(""))
    with pytest.raises(WrongPassword, match="wrong passphrase"):
        unlock(raw, "p2")
    assert sorted(raw.list("")) == before
    assert unlock(raw, "p1").chunk_id(b"x") == unlock(raw, "p1").chunk_id(b"x")


def test_init_is_refused_on_an_encrypted_or_non_empty_store(tmp_path: Path) -> None:
    """Encryption starts with an empty store: no mix of plain and sealed objects."""
    raw = PosixStore(tmp_path / "s")
    init_keys(raw, "p1", FAST)
    with pytest.raises(KeyRefused, match="already encrypted"):
        init_keys(raw, "p1", FAST)
    plain = PosixStore(tmp_path / "plain")
    plain.put("manifests/bk-1.json", b"{}")
    with pytest.raises(KeyRefused, match="already holds objects"):
        init_keys(plain, "p1", FAST)
    with pytest.raises(Exception, match="empty passphrase"):
        init_keys(PosixStore(tmp_path / "e"), "", FAST)


def test_add_passwd_remove_manage_several_passphrases(tmp_path: Path) -> None:
    """restic's key command: several passphrases, one master key, never zero keys."""
    raw = PosixStore(tmp_path / "s")
    first = init_keys(raw, "p1", FAST)
    ids_before = unlock(raw, "p1").chunk_id(b"data")
    second = add_key(raw, "p1", "p2", FAST)
    assert unlock(raw, "p2").chunk_id(b"data") == ids_before  # the same master key
    with pytest.raises(WrongPassword):
        add_key(raw, "nope", "p3", FAST)
    third = change_password(raw, "p2", "p3", FAST)
    with pytest.raises(WrongPassword):
        unlock(raw, "p2")  # the old passphrase is refused after the change
    assert unlock(raw, "p3").chunk_id(b"data") == ids_before
    assert sorted(k.key_id for k in list_keys(raw)) == sorted([first, third])
    assert second not in {k.key_id for k in list_keys(raw)}
    with pytest.raises(KeyNotFound):
        remove_key(raw, "p1", "0123456789abcdef")
    remove_key(raw, "p1", first)
    with pytest.raises(WrongPassword):
        unlock(raw, "p1")
    with pytest.raises(KeyRefused, match="last key"):
        remove_key(raw, "p3", third)
    assert unlock(raw, "p3").chunk_id(b"data") == ids_before


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "not json",
        lambda d: json.dumps({**d, "version": 9}),
        lambda d: json.dumps({**d, "kdf": {**d["kdf"], "n": 1 << 30}}),
        lambda d: json.dumps({**d, "kdf": {**d["kdf"], "n": 1000}}),
        lambda d: json.dumps({**d, "kdf": {**d["kdf"], "name": "md5"}}),
        lambda d: json.dumps({**d, "wrapped": "%%%"}),
        lambda d: json.dumps({**d, "format": "other"}),
        lambda d: "[" * 100000,
    ],
)
def test_a_damaged_key_file_is_corruption_not_a_crash(tmp_path: Path, damage: object) -> None:
    """Bad JSON, unknown versions and hostile scrypt costs are refused by name."""
    raw = PosixStore(tmp_path / "s")
    key_id = init_keys(raw, "p1", FAST)
    name = f"keys/{key_id}.json"
    doc = json.loads(raw.get(name))
    raw.put(name, damage(doc).encode())  # type: ignore[operator]
    with pytest.raises(CorruptionError, match=re.escape(name)):
        unlock(raw, "p1")


# -- backups through an encrypted store ------------------------------------------------------


def test_backup_restore_verify_through_an_encrypted_store(
    file_backend: Backend, tmp_path: Path
) -> None:
    """Nothing of the volume or the manifest is readable in the store; all works as before."""
    raw, store = _encrypted(tmp_path / "vault")
    data = mixed_data() + MARKER
    put_volume(file_backend, "vol", data)
    out = backup(file_backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    manifest = read_manifest(store.objects, out.backup_id)
    assert manifest.volume_id == "vol"
    for ref in manifest.chunks:
        assert ref.digest != hashlib.sha256(data[ref.offset : ref.offset + ref.length]).hexdigest()
    for key in raw.list(""):
        body = raw.get(key)
        assert MARKER[:32] not in body and b'"volume_id"' not in body
        assert b"INFO volume service" not in body
    assert raw.get(f"manifests/{out.backup_id}.json")[:3] == b"PWE"
    assert verify(store, out.backup_id).ok
    restore(file_backend, store, RestoreRequest(out.backup_id, "copy"))
    assert volume_sha(file_backend.driver, "copy") == sha(data)  # type: ignore[arg-type]
    again = backup(file_backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    assert again.bytes_stored == 0  # deduplicated by keyed id


def test_a_tampered_chunk_is_reported_by_verify_and_refused_by_restore(
    file_backend: Backend, tmp_path: Path
) -> None:
    """One flipped bit in a sealed chunk: verify names the offset, restore writes nothing."""
    raw, store = _encrypted(tmp_path / "vault")
    data = mixed_data()
    put_volume(file_backend, "vol", data)
    out = backup(file_backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    ref = read_manifest(store.objects, out.backup_id).chunks[1]
    key = chunk_key(ref.digest)
    body = bytearray(raw.get(key))
    body[len(body) // 2] ^= 0x40
    raw.put(key, bytes(body))
    with pytest.raises(CorruptionError, match=f"offset {ref.offset}"):
        restore(file_backend, store, RestoreRequest(out.backup_id, "copy"))
    report = verify(store, out.backup_id)
    assert not report.ok and {p.offset for p in report.problems} >= {ref.offset}
    assert out.backup_id in report.problems[0].detail
    # verify moved the sealed object aside, as stored; the next backup stores it again.
    assert [k.partition(".")[0] for k in report.quarantined] == [f"quarantine/{ref.digest}"]
    assert raw.get(report.quarantined[0]) == bytes(body)
    healed = backup(file_backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    assert healed.bytes_stored > 0
    assert verify(store, out.backup_id).ok
    restore(file_backend, store, RestoreRequest(out.backup_id, "copy-2"))
    assert volume_sha(file_backend.driver, "copy-2") == sha(data)  # type: ignore[arg-type]


def test_a_tampered_manifest_is_corruption(file_backend: Backend, tmp_path: Path) -> None:
    """A flipped bit in a sealed manifest: the backup is refused, never read wrongly."""
    raw, store = _encrypted(tmp_path / "vault")
    put_volume(file_backend, "vol", mixed_data())
    out = backup(file_backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    name = f"manifests/{out.backup_id}.json"
    body = bytearray(raw.get(name))
    body[40] ^= 0x01
    raw.put(name, bytes(body))
    with pytest.raises(CorruptionError, match=re.escape(name)):
        read_manifest(store.objects, out.backup_id)
    with pytest.raises(CorruptionError):
        restore(file_backend, store, RestoreRequest(out.backup_id, "copy"))


def test_a_store_opened_with_another_key_reads_nothing(
    file_backend: Backend, tmp_path: Path
) -> None:
    """Objects sealed under one master key do not open under another."""
    raw, store = _encrypted(tmp_path / "vault")
    put_volume(file_backend, "vol", mixed_data())
    out = backup(file_backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    other = EncryptedStore(raw, StoreKeys.from_master(bytes(32)))
    with pytest.raises(CorruptionError, match="authentication failed"):
        read_manifest(other, out.backup_id)


def test_offload_is_not_planned_into_an_encrypted_store(tmp_path: Path, failing: object) -> None:
    """A backend that pushes by itself cannot seal: the plan says why and streams instead."""
    backend, _driver = failing()  # type: ignore[operator]
    _raw, store = _encrypted(tmp_path / "vault")
    plan = plan_backup(backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    offload = next(c for c in plan.strategies if c.name == "offload")
    assert not offload.eligible and "encrypted" in offload.reason
    assert plan.chosen is not None and plan.chosen != "offload"


def test_chunk_ids_follow_the_store() -> None:
    """Plain stores keep sha256 ids (today's format stays readable and writable)."""
    assert chunk_id_for(PosixStore.__new__(PosixStore)) is digest_of


def test_an_encrypted_store_is_never_written_in_clear(tmp_path: Path) -> None:
    """A Store over an encrypted store's raw objects is refused: no plain chunk slips in."""
    raw, _store = _encrypted(tmp_path / "vault")
    with pytest.raises(ConfigError, match="store 'vault' is encrypted"):
        Store("vault", raw, StoreSpec("vault", "posix", {"path": str(tmp_path / "vault")}))


def test_an_encrypted_store_batches_durability_like_its_inner_store(tmp_path: Path) -> None:
    """deferred-sync passes through: sealed puts without waiting, one sync barrier."""
    raw, store = _encrypted(tmp_path / "vault")
    sealed = store.objects
    assert IDeferredSync.providedBy(raw) and IDeferredSync.providedBy(sealed)
    IDeferredSync(sealed).put_unsynced("chunks/ab/x", b"chunk body")
    IDeferredSync(sealed).sync(["chunks/ab/x"])
    assert sealed.get("chunks/ab/x") == b"chunk body"
    assert raw.get("chunks/ab/x")[:3] == b"PWE"
    plain_only = EncryptedStore(_NoDeferredSync(raw), sealed.keys)  # type: ignore[attr-defined]
    assert not IDeferredSync.providedBy(plain_only)


class _NoDeferredSync(ObjectStore):
    """A store with the five methods only (no deferred-sync)."""

    def __init__(self, inner: PosixStore) -> None:
        self.inner = inner

    def put(self, key: str, data: bytes | memoryview) -> None:
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)


def test_seal_into_a_reused_buffer_gives_the_same_objects() -> None:
    """seal_into writes a sealed object unseal opens; a buffer too small is refused."""
    keys = _keys()
    buffer = bytearray(64)
    first = bytes(seal_into(keys, "chunks/aa/1", b"one", buffer))
    second = bytes(seal_into(keys, "chunks/aa/2", b"two!", buffer))
    assert unseal(keys, "chunks/aa/1", first) == b"one"
    assert unseal(keys, "chunks/aa/2", second) == b"two!"
    with pytest.raises(ValueError, match="buffer"):
        seal_into(keys, "x", bytes(64), buffer)
