"""The backup data path on real files: FileDriver volumes, PosixStore stores."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from pieceworks.common_algorithms.format.chunk_pipeline import (
    BackupResult,
    ChunkMissing,
    OperationCancelled,
    backup_chunks,
    restore_chunks,
    verify_chunks,
)
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import (
    BackendError,
    ChunkRef,
    CorruptionError,
    Extent,
    VolumeRef,
)
from pieceworks.protocols.chunk_list import ChunkList
from pieceworks.protocols.chunks import CODECS, chunk_key
from pieceworks.protocols.io import takes_concurrent_writes

CS = 64 * 1024  # small chunks keep the tests fast
TEXT = b"".join(
    b"%06d INFO request served in %d ms path=/v1/items/%d\n" % (i, i % 97, i) for i in range(20000)
)


# -- fixtures and helpers ----------------------------------------------------------


@pytest.fixture
def driver(tmp_path: Path) -> FileDriver:
    (tmp_path / "volumes").mkdir()
    return FileDriver(tmp_path / "volumes")


@pytest.fixture
def store(tmp_path: Path) -> PosixStore:
    return PosixStore(tmp_path / "store", durable=False)


def write_volume(
    driver: FileDriver, volume_id: str, size: int, blocks: dict[int, bytes]
) -> VolumeRef:
    """A sparse volume of `size` bytes holding `blocks` (offset -> bytes), zeros elsewhere."""
    volume = driver.create_volume(volume_id, size)
    with open(volume_path(driver, volume_id), "r+b") as f:
        for offset, data in blocks.items():
            f.seek(offset)
            f.write(data)
    return volume


def volume_path(driver: FileDriver, volume_id: str) -> Path:
    return Path(driver.root) / volume_id


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def backup(driver: FileDriver, store: PosixStore, volume: VolumeRef, **kw: object) -> BackupResult:
    kw.setdefault("chunk_size", CS)
    with closing(driver.open_read(volume)) as reader:
        return backup_chunks(reader, store, **kw)  # type: ignore[arg-type]


def manifest_of(
    result: BackupResult, size: int, backup_id: str = "b1", codec: str = "zstd"
) -> Manifest:
    return Manifest(
        backup_id=backup_id,
        volume_id="vol",
        backend="file",
        size=size,
        chunk_size=CS,
        codec=codec,
        chunks=result.chunks,
        created=time.time(),
        strategy="direct-stream",
        stats=result.stats.as_manifest_stats(),
    )


def restore(driver: FileDriver, store: PosixStore, manifest: Manifest, target: str) -> bytes:
    writer = driver.open_write(VolumeRef(target), manifest.size)
    try:
        restore_chunks(store, manifest, writer)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return volume_path(driver, target).read_bytes()


def chunk_objects(store: PosixStore) -> list[str]:
    return list(store.list("chunks/"))


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# -- round trips ----------------------------------------------------------------------


def volume_data(kind: str, size: int) -> bytes:
    if kind == "random":
        return random_bytes(size, 1)
    if kind == "zeros":
        return bytes(size)
    if kind == "text":
        return (TEXT * (size // len(TEXT) + 1))[:size]
    parts = [
        random_bytes(CS, 2),
        bytes(CS),
        (TEXT * 2)[:CS],
        random_bytes(CS // 2, 3) + bytes(CS // 2),
    ]
    return (b"".join(parts) * (size // (4 * CS) + 1))[:size]


@pytest.mark.parametrize("kind", ["random", "zeros", "text", "mixed"])
@pytest.mark.parametrize("size", [0, 1000, CS, 13 * CS + 12345])
def test_restore_is_byte_exact(driver: FileDriver, store: PosixStore, kind: str, size: int) -> None:
    """Backup then restore gives back exactly the original bytes (same sha256), any size."""
    data = volume_data(kind, size)
    volume = write_volume(driver, "vol", size, {0: data})
    result = backup(driver, store, volume)
    restored = restore(driver, store, manifest_of(result, size), "restored")
    assert len(restored) == size
    assert sha(restored) == sha(data)
    stats = result.stats
    assert stats.chunks_total == -(-size // CS)
    assert stats.chunks_total == stats.chunks_new + stats.chunks_reused + stats.holes
    assert stats.bytes_read == size
    assert [c.offset for c in result.chunks] == sorted(c.offset for c in result.chunks)


def test_every_codec_restores_and_chunks_are_shared_across_codecs(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """Each codec restores exactly; a backup asking for another codec reuses stored chunks."""
    size = 6 * CS + 100
    data = volume_data("mixed", size)
    volume = write_volume(driver, "vol", size, {0: data})
    for i, codec in enumerate(CODECS):
        own = PosixStore(tmp_path / f"store-{codec}", durable=False)
        result = backup(driver, own, volume, codec=codec)
        # random chunks do not shrink, so they are stored plain ("none"); the rest use `codec`
        assert codec in {c.codec for c in result.chunks} <= {codec, "none"}
        assert sha(restore(driver, own, manifest_of(result, size, codec=codec), f"r{i}")) == sha(
            data
        )
    first = backup(driver, store, volume, codec="zstd")
    for codec in ("zlib", "none"):
        again = backup(driver, store, volume, codec=codec)
        assert again.stats.chunks_new == 0 and again.stats.bytes_stored == 0
        assert again.chunks == first.chunks  # the refs describe the zstd objects really stored
        assert sha(
            restore(driver, store, manifest_of(again, size, codec=codec), f"x{codec}")
        ) == sha(data)


# -- holes, zeros and deduplication --------------------------------------------------------


def test_holes_and_zero_runs_produce_no_chunk_and_no_object(
    driver: FileDriver, store: PosixStore
) -> None:
    """Unallocated ranges are not even read; allocated zeros are read but never stored."""
    size = 64 * CS
    blocks = {3 * CS: random_bytes(CS, 4), 40 * CS + 7: b"tail data", 20 * CS: bytes(2 * CS)}
    volume = write_volume(driver, "vol", size, blocks)
    extents = driver.allocated_extents(volume)
    result = backup(driver, store, volume, extents=extents)
    assert [c.offset for c in result.chunks] == [3 * CS, 40 * CS]
    assert len(chunk_objects(store)) == 2
    assert result.stats.holes == 62
    assert result.stats.bytes_read <= sum(e.length for e in extents) + 2 * CS
    full = backup(driver, store, volume)  # without extents: everything read, zeros still skipped
    assert full.chunks == result.chunks and full.stats.bytes_read == size
    original = volume_path(driver, "vol").read_bytes()
    assert sha(restore(driver, store, manifest_of(result, size), "r")) == sha(original)


def test_the_same_data_twice_stores_nothing_new(driver: FileDriver, store: PosixStore) -> None:
    """A second backup of unchanged data writes no object, even without a parent."""
    size = 20 * CS + 5
    volume = write_volume(driver, "vol", size, {0: volume_data("mixed", size)})
    first = backup(driver, store, volume)
    objects = chunk_objects(store)
    second = backup(driver, store, volume)
    assert second.stats.chunks_new == 0 and second.stats.bytes_stored == 0
    assert second.stats.chunks_reused == first.stats.chunks_new + first.stats.chunks_reused
    assert second.chunks == first.chunks
    assert chunk_objects(store) == objects


def test_identical_chunks_in_one_volume_are_stored_once(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """Racing worker threads never upload the same chunk twice."""
    block = random_bytes(CS, 5)
    size = 32 * CS
    volume = write_volume(driver, "vol", size, {0: block * 32})
    puts: list[str] = []

    class CountingStore(PosixStore):
        def put(self, key: str, data: bytes | memoryview) -> None:
            puts.append(key)
            time.sleep(0.01)  # widen the race window
            super().put(key, data)

        put_unsynced = put

    counting = CountingStore(tmp_path / "store", durable=False)
    result = backup(driver, counting, volume, threads=4, depth=8)
    assert puts == [chunk_key(sha(block))]
    assert result.stats.chunks_new == 1 and result.stats.chunks_reused == 31
    assert result.stats.bytes_deduplicated == 31 * CS
    assert len({c.digest for c in result.chunks}) == 1 and len(result.chunks) == 32


# -- incrementals ---------------------------------------------------------------------------


def changed_copy(
    driver: FileDriver, data: bytes, indexes: list[int]
) -> tuple[VolumeRef, list[Extent]]:
    """Volume "vol2": `data` with chunks `indexes` overwritten; and the changed extents."""
    blocks = {0: data} | {i * CS + 100: random_bytes(500, 1000 + i) for i in indexes}
    volume = write_volume(driver, "vol2", len(data), blocks)
    return volume, [Extent(i * CS + 100, 500) for i in indexes]


def test_incremental_after_a_one_percent_change_stores_about_one_percent(
    driver: FileDriver, store: PosixStore
) -> None:
    """Changing 1% of the chunks makes the next backup store ~1% of the volume."""
    size = 200 * CS
    data = random_bytes(size, 6)
    volume = write_volume(driver, "vol", size, {0: data})
    parent = manifest_of(backup(driver, store, volume), size, "full")
    changed, _ = changed_copy(driver, data, [7, 150])
    result = backup(driver, store, changed, parent=parent)
    assert result.stats.chunks_new == 2
    assert result.stats.bytes_stored < 0.02 * size
    assert result.stats.bytes_read == size  # without changed extents, everything is read
    restored = restore(driver, store, manifest_of(result, size, "incr"), "r")
    assert sha(restored) == sha(volume_path(driver, "vol2").read_bytes())


def test_an_incremental_lists_its_parent_chunks_in_columns(
    driver: FileDriver, store: PosixStore
) -> None:
    """An unchanged chunk of an incremental is listed as the parent's (same digest, codec and
    stored size), a changed one is new; the list is a `ChunkList` (columns, about 57 bytes a
    chunk, not a ChunkRef object per chunk)."""
    size = 40 * CS
    data = random_bytes(size, 9)
    volume = write_volume(driver, "vol", size, {0: data})
    parent = manifest_of(backup(driver, store, volume), size, "full")
    changed, _ = changed_copy(driver, data, [5])
    result = backup(driver, store, changed, parent=parent)
    assert isinstance(result.chunks, ChunkList)
    assert [c == p for c, p in zip(result.chunks, parent.chunks, strict=True)] == [
        i != 5 for i in range(40)
    ]
    assert result.chunks[5].digest != parent.chunks[5].digest


def test_read_only_reads_only_the_changed_ranges(driver: FileDriver, store: PosixStore) -> None:
    """With changed extents, only the chunks they touch are read; the rest come from the parent."""
    size = 100 * CS + 999
    data = volume_data("mixed", size)
    volume = write_volume(driver, "vol", size, {0: data})
    parent = manifest_of(backup(driver, store, volume), size, "full")
    changed, extents = changed_copy(driver, data, [0, 42, 43, 100])
    result = backup(driver, store, changed, parent=parent, read_only=extents)
    assert result.stats.bytes_read == 3 * CS + 999
    assert result.stats.chunks_new == 4
    reused = [c for c in result.chunks if c.offset // CS not in (0, 42, 43, 100)]
    assert reused == [c for c in parent.chunks if c.offset // CS not in (0, 42, 43, 100)]
    restored = restore(driver, store, manifest_of(result, size, "incr"), "r")
    assert sha(restored) == sha(volume_path(driver, "vol2").read_bytes())
    by_map = backup(driver, store, changed, reuse=parent.chunk_map(), read_only=extents)
    assert by_map.chunks == result.chunks and by_map.stats.bytes_read == result.stats.bytes_read


def test_read_only_with_a_mismatched_parent_reads_everything(
    driver: FileDriver, store: PosixStore
) -> None:
    """A parent of another chunk size cannot vouch for unread ranges, so all is read."""
    size = 16 * CS
    data = random_bytes(size, 7)
    volume = write_volume(driver, "vol", size, {0: data})
    full = backup(driver, store, volume, chunk_size=2 * CS)
    parent = Manifest(
        "full", "vol", "file", size, 2 * CS, "zstd", full.chunks, 1.0, "direct-stream"
    )
    changed, extents = changed_copy(driver, data, [3])
    result = backup(driver, store, changed, parent=parent, read_only=extents)
    assert result.stats.bytes_read == size
    restored = restore(driver, store, manifest_of(result, size, "incr"), "r")
    assert sha(restored) == sha(volume_path(driver, "vol2").read_bytes())
    with pytest.raises(ValueError, match="does not fit"):
        backup(driver, store, changed, reuse=parent.chunk_map(), read_only=extents)
    with pytest.raises(ValueError, match="read_only needs parent"):
        backup(driver, store, changed, read_only=extents)


# -- corruption and verification ---------------------------------------------------------------


class RecordingWriter:
    """Wraps a real writer and records the offsets written."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.offsets: list[int] = []

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        self.offsets.append(offset)
        self.inner.write_at(offset, data)  # type: ignore[attr-defined]

    def commit(self) -> None:
        self.inner.commit()  # type: ignore[attr-defined]

    def abort(self) -> None:
        self.inner.abort()  # type: ignore[attr-defined]


def flip_byte(store_root: Path, digest: str, at: int = -5) -> None:
    """Damage one byte of a stored chunk object, in place."""
    path = store_root / chunk_key(digest)
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x40
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_stops_the_restore_before_that_chunk(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """Restore raises CorruptionError naming the offset; the bad chunk is never written."""
    size = 12 * CS
    volume = write_volume(driver, "vol", size, {0: random_bytes(size, 8)})
    manifest = manifest_of(backup(driver, store, volume), size)
    bad = manifest.chunks[5]
    flip_byte(tmp_path / "store", bad.digest)
    writer = RecordingWriter(driver.open_write(VolumeRef("r"), size))
    with pytest.raises(CorruptionError, match=f"at offset {bad.offset}") as err:
        restore_chunks(store, manifest, writer)
    writer.abort()
    assert err.value.offset == bad.offset
    assert bad.offset not in writer.offsets
    assert writer.offsets == [c.offset for c in manifest.chunks[:5]]
    assert not volume_path(driver, "r").exists()


class ConcurrentRecordingWriter(RecordingWriter):
    """A `RecordingWriter` that takes concurrent writes and records which thread wrote."""

    concurrent_writes = True

    def __init__(self, inner: object) -> None:
        super().__init__(inner)
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        with self.lock:
            self.threads.add(threading.current_thread().name)
        super().write_at(offset, data)


def test_the_file_writer_takes_concurrent_writes(driver: FileDriver) -> None:
    """The file driver writes with pwrite: it declares concurrent writes (a restore uses them)."""
    writer = driver.open_write(VolumeRef("w"), CS)
    try:
        assert takes_concurrent_writes(writer)
    finally:
        writer.abort()
    assert not takes_concurrent_writes(RecordingWriter(writer))


def test_a_writer_taking_concurrent_writes_is_written_by_the_workers(
    driver: FileDriver, store: PosixStore
) -> None:
    """Each worker writes what it decoded: byte-exact, and not on the calling thread."""
    size = 12 * CS + 777
    data = volume_data("mixed", size)
    manifest = manifest_of(
        backup(driver, store, write_volume(driver, "vol", size, {0: data})), size
    )
    writer = ConcurrentRecordingWriter(driver.open_write(VolumeRef("r"), size))
    stats = restore_chunks(store, manifest, writer, threads=2)
    writer.commit()
    assert volume_path(driver, "r").read_bytes() == data
    assert sorted(writer.offsets) == [c.offset for c in manifest.chunks]
    assert writer.threads and all(t.startswith("pieceworks-restore") for t in writer.threads)
    assert threading.current_thread().name not in writer.threads
    assert stats.bytes_written == sum(c.length for c in manifest.chunks)


def test_a_flipped_byte_stops_a_concurrent_restore_without_writing_that_chunk(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """With concurrent writes too: CorruptionError names the offset, the bad chunk is unwritten."""
    size = 12 * CS
    volume = write_volume(driver, "vol", size, {0: random_bytes(size, 8)})
    manifest = manifest_of(backup(driver, store, volume), size)
    bad = manifest.chunks[5]
    flip_byte(tmp_path / "store", bad.digest)
    writer = ConcurrentRecordingWriter(driver.open_write(VolumeRef("r"), size))
    with pytest.raises(CorruptionError, match=f"at offset {bad.offset}") as err:
        restore_chunks(store, manifest, writer, depth=3)
    writer.abort()
    assert err.value.offset == bad.offset
    assert bad.offset not in writer.offsets
    assert set(writer.offsets) >= {c.offset for c in manifest.chunks[:5]}
    assert not volume_path(driver, "r").exists()


def test_verify_lists_every_missing_and_corrupt_chunk(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """Verify reports all problems with offsets, including every offset of a shared chunk."""
    size = 10 * CS
    shared = random_bytes(CS, 9)
    blocks = {i * CS: random_bytes(CS, 10 + i) for i in range(10)} | {
        2 * CS: shared,
        8 * CS: shared,
    }
    volume = write_volume(driver, "vol", size, blocks)
    manifest = manifest_of(backup(driver, store, volume), size)
    good = verify_chunks(store, manifest)
    assert (
        good.ok and good.problems == () and good.chunks_checked == 10 and good.bytes_checked == size
    )
    flip_byte(tmp_path / "store", manifest.chunks[1].digest, at=10)
    flip_byte(tmp_path / "store", manifest.chunks[6].digest)
    os.unlink((tmp_path / "store") / chunk_key(sha(shared)))
    report = verify_chunks(store, manifest, threads=3)
    assert not report.ok
    assert [(p.offset, p.reason) for p in report.problems] == [
        (1 * CS, "corrupt"),
        (2 * CS, "missing"),
        (6 * CS, "corrupt"),
        (8 * CS, "missing"),
    ]
    assert all(p.detail for p in report.problems)
    with pytest.raises(CorruptionError, match=f"at offset {CS}: content does not match"):
        restore(driver, store, manifest, "r")
    later = dataclasses.replace(manifest, chunks=manifest.chunks[2:])
    with pytest.raises(ChunkMissing, match=f"at offset {2 * CS} is missing") as err:
        restore(driver, store, later, "r")
    assert err.value.offset == 2 * CS


def test_a_damaged_stored_chunk_is_replaced_not_reused(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """A backup that finds a damaged object for its chunk writes it again."""
    size = 4 * CS
    data = random_bytes(size, 11)
    volume = write_volume(driver, "vol", size, {0: data})
    first = backup(driver, store, volume)
    flip_byte(tmp_path / "store", first.chunks[2].digest)
    second = backup(driver, store, volume)
    assert second.stats.chunks_new == 1
    assert verify_chunks(store, manifest_of(second, size)).ok


# -- failures, cancellation, memory -------------------------------------------------------------


class Boom(Exception):
    """The original error a failing store raises."""


class FailingStore(PosixStore):
    """A real PosixStore whose put raises on its `fail_at`-th call."""

    def __init__(self, root: Path, fail_at: int) -> None:
        super().__init__(root, durable=False)
        self.fail_at, self.calls = fail_at, 0
        self.lock = threading.Lock()
        self.error = Boom(f"put number {fail_at} failed")

    def put(self, key: str, data: bytes | memoryview) -> None:
        with self.lock:
            self.calls += 1
            fail = self.calls == self.fail_at
        if fail:
            raise self.error
        super().put(key, data)

    put_unsynced = put  # the chunk pipeline's (deferred-sync) put fails alike


@pytest.mark.timeout(30)
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_a_worker_failure_propagates_the_original_error_without_hanging(
    tmp_path: Path, driver: FileDriver, store: PosixStore, threads: int
) -> None:
    """The first worker error is re-raised as is, all threads stop, no manifest exists."""
    size = 40 * CS
    volume = write_volume(driver, "vol", size, {0: random_bytes(size, 12)})
    failing = FailingStore(tmp_path / "store", fail_at=5)
    before = threading.active_count()
    with pytest.raises(Boom) as err:
        backup(driver, failing, volume, threads=threads, depth=threads + 2)
    assert err.value is failing.error
    assert threading.active_count() == before
    assert failing.calls < 5 + threads + 3  # stopped promptly
    assert list(store.list("manifests/")) == []


@pytest.mark.timeout(30)
def test_a_backup_resumed_after_a_failure_sends_only_what_is_missing(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """Chunks stored before a failure are found (and checked) in the store, not sent again."""
    size = 30 * CS
    data = random_bytes(size, 13)
    volume = write_volume(driver, "vol", size, {0: data})
    with pytest.raises(Boom):
        backup(driver, FailingStore(tmp_path / "store", fail_at=11), volume, threads=1)
    stored = len(chunk_objects(store))
    assert stored == 10
    result = backup(driver, store, volume)
    assert result.stats.chunks_new == 30 - stored and result.stats.chunks_reused == stored
    assert sha(restore(driver, store, manifest_of(result, size), "r")) == sha(data)


class FailingReader:
    """A real reader that raises on its `fail_at`-th read."""

    def __init__(self, inner: object, fail_at: int) -> None:
        self.inner, self.fail_at, self.reads = inner, fail_at, 0

    @property
    def size(self) -> int:
        return int(self.inner.size)  # type: ignore[attr-defined]

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        self.reads += 1
        if self.reads == self.fail_at:
            raise BackendError(f"disk error at offset {offset}")
        return int(self.inner.readinto_at(offset, buffer))  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_a_reader_failure_propagates(driver: FileDriver, store: PosixStore) -> None:
    """A read error stops the backup and is raised as is."""
    size = 20 * CS
    volume = write_volume(driver, "vol", size, {0: random_bytes(size, 14)})
    reader = FailingReader(driver.open_read(volume), fail_at=7)
    with closing(reader), pytest.raises(BackendError, match=f"disk error at offset {6 * CS}"):
        backup_chunks(reader, store, chunk_size=CS)


def test_a_source_shorter_than_its_size_is_an_error(driver: FileDriver, store: PosixStore) -> None:
    """A reader that returns fewer bytes than its size promises raises BackendError."""
    volume = write_volume(driver, "vol", 3 * CS, {0: random_bytes(3 * CS, 15)})
    with closing(driver.open_read(volume)) as reader:
        os.truncate(volume_path(driver, "vol"), 2 * CS + 10)
        with pytest.raises(BackendError, match=f"short read at offset {2 * CS}: got 10"):
            backup_chunks(reader, store, chunk_size=CS)


def test_progress_is_monotonic_bounded_and_complete(driver: FileDriver, store: PosixStore) -> None:
    """Progress is reported at most about every 1%, never goes back, and ends at the total."""
    size = 300 * CS + 1
    volume = write_volume(driver, "vol", size, {0: volume_data("mixed", size)})
    seen: list[tuple[int, int]] = []
    result = backup(driver, store, volume, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (size, size)
    assert all(t == size for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) <= 102
    seen.clear()
    restore_chunks(
        store,
        manifest_of(result, size),
        RecordingWriter(driver.open_write(VolumeRef("r"), size)),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1] == (size, size) and len(seen) <= 102


@pytest.mark.timeout(30)
def test_cancel_stops_backup_and_restore(driver: FileDriver, store: PosixStore) -> None:
    """Setting the cancel event raises OperationCancelled promptly."""
    size = 100 * CS
    volume = write_volume(driver, "vol", size, {0: random_bytes(size, 16)})
    cancel = threading.Event()

    def cancel_at_10_percent(done: int, total: int) -> None:
        if done >= total // 10:
            cancel.set()

    with pytest.raises(OperationCancelled):
        backup(driver, store, volume, progress=cancel_at_10_percent, cancel=cancel)
    assert len(chunk_objects(store)) < 30
    result = backup(driver, store, volume)
    cancel.clear()
    writer = driver.open_write(VolumeRef("r"), size)
    with pytest.raises(OperationCancelled):
        restore_chunks(
            store, manifest_of(result, size), writer, progress=cancel_at_10_percent, cancel=cancel
        )
    writer.abort()


class InstrumentedReader:
    """A real reader that records the distinct buffers it is given and chunks in flight."""

    def __init__(self, inner: object, store: SlowStore) -> None:
        self.inner, self.store = inner, store
        self.buffers: set[int] = set()
        self.reads = 0
        self.max_in_flight = 0

    @property
    def size(self) -> int:
        return int(self.inner.size)  # type: ignore[attr-defined]

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        self.buffers.add(id(buffer.obj))
        self.reads += 1
        self.max_in_flight = max(self.max_in_flight, self.reads - self.store.done)
        return int(self.inner.readinto_at(offset, buffer))  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


class SlowStore(PosixStore):
    """A real PosixStore whose puts are slow, so that reading runs ahead if it can."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, durable=False)
        self.done = 0
        self.lock = threading.Lock()

    def put(self, key: str, data: bytes | memoryview) -> None:
        time.sleep(0.003)
        super().put(key, data)
        with self.lock:
            self.done += 1

    put_unsynced = put


@pytest.mark.parametrize(("threads", "depth"), [(1, 1), (2, 4), (3, 5)])
def test_memory_is_bounded_by_depth_whatever_the_volume_size(
    tmp_path: Path, driver: FileDriver, store: PosixStore, threads: int, depth: int
) -> None:
    """At most `depth` buffers and `depth + threads` chunks in flight; peak memory stays small."""
    size = 96 * CS
    volume = write_volume(driver, "vol", size, {0: random_bytes(size, 17)})
    slow = SlowStore(tmp_path / "store")
    tracemalloc.start()
    try:
        with closing(InstrumentedReader(driver.open_read(volume), slow)) as reader:
            result = backup_chunks(
                reader, slow, chunk_size=CS, codec="none", threads=threads, depth=depth
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.stats.chunks_new == 96
    assert len(reader.buffers) <= depth
    assert reader.max_in_flight <= depth + threads
    assert peak < (depth + threads) * CS * 2 + 256 * 1024, (
        f"peak {peak} bytes for a {size}-byte volume"
    )


class TearingStore(PosixStore):
    """A real PosixStore that copies each object in two halves with a pause between.

    A pipeline that lent the buffer of an object it is still putting to the
    next read would store a torn object: half one chunk, half another.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root, durable=False)
        self.views: list[int] = []  # ids of the buffers objects were put straight from

    def put(self, key: str, data: bytes | memoryview) -> None:
        if isinstance(data, memoryview):
            self.views.append(id(data.obj))
        half = len(data) // 2
        first = bytes(data[:half])
        time.sleep(0.002)
        super().put(key, first + bytes(data[half:]))

    put_unsynced = put


def test_an_incompressible_chunk_is_stored_from_its_read_buffer_and_never_torn(
    tmp_path: Path, driver: FileDriver
) -> None:
    """Random chunks go to the store as views of the buffers they were read into (no copy),
    and a buffer is read into again only once its object is stored: every object restores."""
    size = 48 * CS
    data = random_bytes(size, 21)
    volume = write_volume(driver, "vol", size, {0: data})
    tearing = TearingStore(tmp_path / "store")
    with closing(InstrumentedReader(driver.open_read(volume), SlowStore(tmp_path / "x"))) as reader:
        result = backup_chunks(reader, tearing, chunk_size=CS, codec="zstd", threads=2, depth=2)
    assert result.stats.chunks_new == 48
    assert len(tearing.views) == 48 and set(tearing.views) <= reader.buffers
    assert sha(restore(driver, tearing, manifest_of(result, size), "r")) == sha(data)


def iter_sizes() -> Iterator[int]:
    yield from (1, CS - 1, CS + 1)


@pytest.mark.parametrize("size", list(iter_sizes()))
def test_odd_sizes_with_extents_round_trip(
    driver: FileDriver, store: PosixStore, size: int
) -> None:
    """Extents past the end, empty extents and a short last chunk are handled."""
    data = random_bytes(size, 18)
    volume = write_volume(driver, "vol", size, {0: data})
    extents = [Extent(0, 0), Extent(0, size + 10 * CS)]
    result = backup(driver, store, volume, extents=extents)
    assert sha(restore(driver, store, manifest_of(result, size), "r")) == sha(data)


def test_bad_arguments_are_refused(driver: FileDriver, store: PosixStore) -> None:
    """Nonsense parameters raise clear errors before any work."""
    volume = write_volume(driver, "vol", CS, {})
    with pytest.raises(ValueError, match="threads must be >= 1"):
        backup(driver, store, volume, threads=0)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        backup(driver, store, volume, depth=0)
    with pytest.raises(ValueError, match="chunk_size must be > 0"):
        backup(driver, store, volume, chunk_size=0)
    with pytest.raises(Exception, match="unknown codec 'lz5'"):
        backup(driver, store, volume, codec="lz5")
    parent = Manifest(
        "p", "vol", "file", CS, CS, "zstd", (ChunkRef(0, CS, "a" * 64, "zstd", 9),), 1.0, "x"
    )
    with pytest.raises(ValueError, match="parent or reuse"):
        backup(driver, store, volume, parent=parent, reuse=parent.chunk_map())


# -- deferred-sync: one durable barrier before the chunk list is returned -------------


class _RecordingStore(PosixStore):
    """A durable PosixStore that logs its writes and barriers (all still done for real)."""

    def __init__(self, path: Path, fail_sync: bool = False) -> None:
        super().__init__(path, durable=True)
        self.log: list[tuple[str, tuple[str, ...]]] = []
        self.fail_sync = fail_sync

    def put(self, key: str, data: bytes | memoryview) -> None:
        self.log.append(("put", (key,)))
        super().put(key, data)

    def put_unsynced(self, key: str, data: bytes | memoryview) -> None:
        self.log.append(("put_unsynced", (key,)))
        super().put_unsynced(key, data)

    def sync(self, keys: Iterable[str]) -> None:
        keys = tuple(keys)
        self.log.append(("sync", keys))
        if self.fail_sync:
            raise BackendError("disk full while syncing")
        super().sync(keys)


def test_backup_makes_every_chunk_it_wrote_or_found_durable_before_returning(
    driver: FileDriver, tmp_path: Path
) -> None:
    """New chunks are put unsynced, then one sync covers them and the ones found in the store."""
    blocks = {i * CS: random_bytes(CS, i) for i in range(6)}
    volume = write_volume(driver, "vol", 8 * CS, blocks)
    store = _RecordingStore(tmp_path / "store")
    # a killed earlier run left one chunk behind, written but never synced
    leftover = chunk_key(sha(blocks[2 * CS]))
    with closing(driver.open_read(volume)) as reader:
        first = backup_chunks(reader, store, chunk_size=CS)
    store.log.clear()
    for ref in first.chunks:  # an empty store but for the leftover
        if chunk_key(ref.digest) != leftover:
            store.delete(chunk_key(ref.digest))
    result = backup(driver, store, volume)
    kinds = [kind for kind, _ in store.log]
    assert "put" not in kinds and kinds.count("sync") == 1 and kinds[-1] == "sync"
    written = {keys[0] for kind, keys in store.log if kind == "put_unsynced"}
    synced = set(store.log[-1][1])
    referenced = {chunk_key(ref.digest) for ref in result.chunks}
    assert leftover not in written and leftover in synced  # found intact, synced all the same
    assert synced == referenced == written | {leftover}
    assert result.stats.chunks_new == 5 and result.stats.chunks_reused == 1


def test_a_failed_sync_fails_the_backup(driver: FileDriver, tmp_path: Path) -> None:
    """If the chunks cannot be made durable, no chunk list is returned (so no manifest)."""
    volume = write_volume(driver, "vol", 4 * CS, {0: random_bytes(CS, 1)})
    store = _RecordingStore(tmp_path / "store", fail_sync=True)
    with pytest.raises(BackendError, match="disk full while syncing"):
        backup(driver, store, volume)
    assert [kind for kind, _ in store.log] == ["put_unsynced", "sync"]


def test_a_backup_of_holes_only_syncs_nothing(driver: FileDriver, tmp_path: Path) -> None:
    """No chunk referenced: no barrier either."""
    volume = write_volume(driver, "vol", 4 * CS, {})
    store = _RecordingStore(tmp_path / "store")
    assert backup(driver, store, volume).chunks == ()
    assert store.log == []
