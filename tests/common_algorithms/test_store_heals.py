"""A store that heals: a chunk a backup reuses is known present at its size, else stored again.

Every damage kind below, done to one chunk object of the parent backup,
used to give an incremental that exited fine and could not be restored.
Both ways an incremental reuses chunks are tried: by digest (``known``:
the chunk is read and hashed, and found among the parent's) and by offset
without reading (``reuse`` with changed-blocks' ``read_only``). Damage that
keeps the size is found by verify, which moves the object aside so that
the next backup stores it again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path

import pytest

from pieceworks.common_algorithms.format.chunk_pipeline import (
    QUARANTINE_PREFIX,
    BackupResult,
    backup_chunks,
    quarantine_chunk,
    restore_chunks,
    verify_chunks,
)
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import ChunkRef, CorruptionError, VolumeRef
from pieceworks.protocols.chunks import chunk_key, decode_chunk

CS = 64 * 1024
SIZE = 8 * CS


def _data() -> bytes:
    return b"".join(
        (b"block %d " % i) * (CS // 16) + os.urandom(CS - len(b"block %d " % i) * (CS // 16))
        for i in range(8)
    )


def _deleted(path: Path) -> None:
    path.unlink()


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _zero_length(path: Path) -> None:
    path.write_bytes(b"")


def _extended(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0" * 512)


#: Damage that changes what a stat sees: the next backup alone heals it.
SIZE_DAMAGE: dict[str, Callable[[Path], None]] = {
    "deleted": _deleted,
    "truncated": _truncated,
    "zero-length": _zero_length,
    "extended": _extended,
}


@pytest.fixture
def driver(tmp_path: Path) -> FileDriver:
    (tmp_path / "volumes").mkdir()
    return FileDriver(tmp_path / "volumes")


@pytest.fixture
def store(tmp_path: Path) -> PosixStore:
    return PosixStore(tmp_path / "store", durable=False)


def _volume(driver: FileDriver, data: bytes) -> VolumeRef:
    driver.write_volume(VolumeRef("vol"), data)
    return VolumeRef("vol")


def _backup(driver: FileDriver, store: PosixStore, **kw: object) -> BackupResult:
    with closing(driver.open_read(VolumeRef("vol"))) as reader:
        return backup_chunks(reader, store, chunk_size=CS, **kw)  # type: ignore[arg-type]


def _manifest(result: BackupResult, backup_id: str) -> Manifest:
    return Manifest(
        backup_id=backup_id,
        volume_id="vol",
        backend="file",
        size=SIZE,
        chunk_size=CS,
        codec="zstd",
        chunks=result.chunks,
        created=time.time(),
        strategy="direct-stream",
    )


def _restore(driver: FileDriver, store: PosixStore, manifest: Manifest) -> bytes:
    writer = driver.open_write(VolumeRef("restored"), manifest.size)
    try:
        restore_chunks(store, manifest, writer)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return (Path(driver.root) / "restored").read_bytes()


def _incremental(driver: FileDriver, store: PosixStore, parent: Manifest, how: str) -> BackupResult:
    if how == "known":  # read everything, dedup against the parent's digests
        return _backup(driver, store, known={c.digest: c for c in parent.chunks})
    return _backup(driver, store, parent=parent, read_only=[])  # nothing changed: reuse all


def _object(tmp_path: Path, ref: ChunkRef) -> Path:
    return tmp_path / "store" / chunk_key(ref.digest)


@pytest.mark.parametrize("how", ["known", "reuse-without-reading"])
@pytest.mark.parametrize("damage", SIZE_DAMAGE.values(), ids=SIZE_DAMAGE.keys())
def test_an_incremental_stores_a_damaged_parent_chunk_again(
    tmp_path: Path,
    driver: FileDriver,
    store: PosixStore,
    damage: Callable[[Path], None],
    how: str,
) -> None:
    """The new backup restores byte for byte and the store holds the chunk intact again."""
    data = _data()
    _volume(driver, data)
    parent = _manifest(_backup(driver, store), "b1")
    victim = parent.chunks[3]
    damage(_object(tmp_path, victim))

    result = _incremental(driver, store, parent, how)

    assert result.stats.chunks_damaged == 1
    assert result.stats.chunks_new == 1 and result.stats.chunks_reused == 7
    assert _restore(driver, store, _manifest(result, "b2")) == data
    healed = _object(tmp_path, victim).read_bytes()
    assert decode_chunk(healed, victim.digest, victim.length) == data[3 * CS : 4 * CS]


def test_reused_chunks_cost_one_batched_size_query(
    driver: FileDriver, store: PosixStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All the parent's chunks are checked in one `sizes` call, never by reading them."""
    _volume(driver, _data())
    parent = _manifest(_backup(driver, store), "b1")
    calls: list[list[str]] = []
    gets: list[str] = []
    sizes, get = store.sizes, store.get

    def counted_sizes(keys: Iterable[str]) -> dict[str, int]:
        calls.append(list(keys))
        return sizes(calls[-1])

    def counted_get(key: str) -> bytes:
        gets.append(key)
        return get(key)

    monkeypatch.setattr(store, "sizes", counted_sizes)
    monkeypatch.setattr(store, "get", counted_get)
    result = _backup(driver, store, parent=parent, read_only=[])
    assert result.stats.chunks_reused == 8 and result.stats.bytes_read == 0
    assert len(calls) == 1 and len(calls[0]) == 8 and gets == []


def test_same_size_garbage_is_quarantined_by_verify_and_the_next_backup_heals(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """A stat cannot see it; verify can: it moves the object aside, then a backup stores it."""
    data = _data()
    _volume(driver, data)
    parent = _manifest(_backup(driver, store), "b1")
    victim = parent.chunks[5]
    path = _object(tmp_path, victim)
    garbage = os.urandom(path.stat().st_size)
    path.write_bytes(garbage)

    unhealed = _manifest(_incremental(driver, store, parent, "known"), "b2")
    with pytest.raises(CorruptionError, match=f"backup b2: chunk {victim.digest} at offset"):
        _restore(driver, store, unhealed)

    report = verify_chunks(store, parent, quarantine=True)
    assert [(p.offset, p.reason) for p in report.problems] == [(5 * CS, "corrupt")]
    assert "backup b1" in report.problems[0].detail and "moved aside" in report.problems[0].detail
    [aside] = report.quarantined
    assert aside.startswith(QUARANTINE_PREFIX) and store.get(aside) == garbage
    assert not path.exists()

    healed = _incremental(driver, store, parent, "reuse-without-reading")
    assert healed.stats.chunks_damaged == 1
    assert _restore(driver, store, _manifest(healed, "b3")) == data
    assert verify_chunks(store, _manifest(healed, "b3")).ok


def test_verify_without_quarantine_leaves_the_object(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """A read-only verify reports the damage and changes nothing."""
    _volume(driver, _data())
    parent = _manifest(_backup(driver, store), "b1")
    path = _object(tmp_path, parent.chunks[0])
    path.write_bytes(os.urandom(path.stat().st_size))
    report = verify_chunks(store, parent)
    assert not report.ok and report.quarantined == () and path.exists()
    assert list(store.list(QUARANTINE_PREFIX)) == []


def test_quarantine_spares_a_good_copy_written_meanwhile(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """If the object changed since it was found damaged, it is left alone."""
    _volume(driver, _data())
    parent = _manifest(_backup(driver, store), "b1")
    ref = parent.chunks[0]
    good = store.get(chunk_key(ref.digest))
    assert quarantine_chunk(store, ref.digest, b"PWC\x00what verify saw") is None
    assert store.get(chunk_key(ref.digest)) == good
    assert list(store.list(QUARANTINE_PREFIX)) == []
