"""One unreadable manifest harms only itself: a clear CorruptionError, the others still read.

Each damage kind below was found on a real store: a flipped byte (bad
checksum), a cut file, NaN/Infinity where a number belongs, JSON nested
200,000 deep, and a stray file that is no manifest at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pieceworks.common_algorithms.format.manifest import (
    Manifest,
    UnreadableManifests,
    latest_manifest,
    list_manifests,
    manifest_key,
    read_manifest,
    scan_manifests,
    write_manifest,
)
from pieceworks.common_algorithms.gc.collection import collect_garbage
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import ChunkRef, CorruptionError

CS = 64 * 1024


def _digest(n: float) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _manifest(backup_id: str, volume_id: str, created: float) -> Manifest:
    return Manifest(
        backup_id=backup_id,
        volume_id=volume_id,
        backend="lab",
        size=4 * CS,
        chunk_size=CS,
        codec="zstd",
        chunks=(ChunkRef(0, CS, _digest(created), "zstd", 100),),
        created=created,
        strategy="direct-stream",
    )


def _with_body(good: bytes, edit: Callable[[str], str]) -> bytes:
    """`good` with its body edited as text and the checksum made to match again."""
    doc = json.loads(good)
    body_text = edit(json.dumps(doc["manifest"], sort_keys=True, separators=(",", ":")))
    checksum = hashlib.sha256(body_text.encode()).hexdigest()
    head = f'{{"format":"pieceworks.manifest","version":1,"sha256":"{checksum}","manifest":'
    return (head + body_text + "}").encode()


def _bad_checksum(good: bytes) -> bytes:
    return good.replace(b'"volume_id":"vol-a"', b'"volume_id":"vol-b"')


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _nan(good: bytes) -> bytes:
    return _with_body(good, lambda t: t.replace('"size":262144', '"size":NaN'))


def _infinity(good: bytes) -> bytes:
    return _with_body(good, lambda t: t.replace('"created":3.0', '"created":-Infinity'))


def _overflow(good: bytes) -> bytes:
    return _with_body(good, lambda t: t.replace('"created":3.0', '"created":1e999'))


def _deep(good: bytes) -> bytes:
    return b"[" * 200_000 + b"]" * 200_000


def _deep_in_body(good: bytes) -> bytes:
    return _with_body(
        good, lambda t: t.replace('"stats":{}', '"stats":' + "[" * 200_000 + "]" * 200_000)
    )


def _junk(good: bytes) -> bytes:
    return b"\x00\xffjunk, not JSON"


def _not_utf8(good: bytes) -> bytes:
    return b'{"format": "\xff\xfe"}'


DAMAGE = {
    "bad-checksum": _bad_checksum,
    "truncated": _truncated,
    "nan": _nan,
    "infinity": _infinity,
    "overflowing-number": _overflow,
    "nested-200000-deep": _deep,
    "nested-deep-inside-the-body": _deep_in_body,
    "junk": _junk,
    "not-utf8": _not_utf8,
}


@pytest.fixture
def store(tmp_path: Path) -> PosixStore:
    s = PosixStore(tmp_path / "store", durable=False)
    write_manifest(s, _manifest("bk-a1", "vol-a", 1.0))
    write_manifest(s, _manifest("bk-b1", "vol-b", 2.0))
    write_manifest(s, _manifest("bk-a2", "vol-a", 3.0))
    return s


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_each_damage_kind_is_a_corruption_error_naming_the_manifest(
    store: PosixStore, damage: Callable[[bytes], bytes]
) -> None:
    """Never a bare ValueError or RecursionError: a CorruptionError that names the key."""
    key = manifest_key("bk-a2")
    store.put(key, damage(store.get(key)))
    with pytest.raises(CorruptionError, match=r"manifests/bk-a2\.json") as caught:
        read_manifest(store, "bk-a2")
    assert type(caught.value) is CorruptionError


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_the_others_stay_readable_and_incrementals_go_on(
    store: PosixStore, damage: Callable[[bytes], bytes]
) -> None:
    """scan_manifests reads every other manifest; latest_manifest skips only the bad one."""
    key = manifest_key("bk-a2")
    store.put(key, damage(store.get(key)))
    scan = scan_manifests(store)
    assert [m.backup_id for m in scan.manifests] == ["bk-a1", "bk-b1"]
    assert [u.backup_id for u in scan.unreadable] == ["bk-a2"]
    assert scan.unreadable[0].key == key
    latest_b = latest_manifest(store, "vol-b")
    assert latest_b is not None and latest_b.backup_id == "bk-b1"
    latest_a = latest_manifest(store, "vol-a")  # the newest one it can read
    assert latest_a is not None and latest_a.backup_id == "bk-a1"


def test_a_stray_file_under_a_manifest_name_is_marked_not_fatal(store: PosixStore) -> None:
    """``manifests/bk-junk.json`` with junk in it is one unreadable entry, nothing more."""
    store.put("manifests/bk-junk.json", b"hello")
    scan = scan_manifests(store)
    assert len(scan.manifests) == 3
    assert [u.backup_id for u in scan.unreadable] == ["bk-junk"]
    assert "not valid JSON" in scan.unreadable[0].reason


def test_gc_refuses_while_a_manifest_is_unreadable_and_says_how_to_resolve(
    store: PosixStore,
) -> None:
    """Nothing is collected; the error names every bad manifest and the two ways out."""
    store.put("chunks/aa/" + "a" * 64, b"unreferenced")
    store.put("manifests/bk-junk.json", b"hello")
    store.put(manifest_key("bk-b1"), _nan(store.get(manifest_key("bk-b1"))))
    with pytest.raises(UnreadableManifests) as caught:
        collect_garbage(store)
    message = str(caught.value)
    assert "manifests/bk-junk.json" in message and "manifests/bk-b1.json" in message
    assert "intact copy" in message and "pieceworks delete" in message
    assert {u.backup_id for u in caught.value.unreadable} == {"bk-junk", "bk-b1"}
    assert store.exists("chunks/aa/" + "a" * 64)  # nothing deleted
    with pytest.raises(UnreadableManifests):
        list_manifests(store)
