"""Memory a backup holds per chunk stays bounded (issue 12: peak RSS under 128 MiB at 1 TiB).

A 1 TiB volume in 4 MiB chunks has 262,144 chunks: every byte a backup holds
per chunk costs 0.25 MiB there. These tests count, with tracemalloc, what
100,000 chunks cost on the way from the pipeline to the stored manifest.
The bounds are generous (about twice what the columns take); the code before
`ChunkList` held about 300 bytes a chunk in the pipeline and about 650 from
the transfer result to the manifest's bytes.
"""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from pieceworks.common_algorithms.format import backup_pipeline, heap, manifest_store
from pieceworks.common_algorithms.format.chunk_pipeline import backup_chunks
from pieceworks.common_algorithms.format.manifest import (
    Manifest,
    latest_manifest,
    read_manifest,
    write_manifest,
)
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import ObjectInfo, ObjectNotFound, ObjectStore
from pieceworks.protocols.chunk_list import ChunkListBuilder, chunk_list_from_json

T = TypeVar("T")
COUNT = 100_000


def peak_bytes_per_chunk(make: Callable[[], T], count: int) -> tuple[T, float]:
    """What `make` returns, and its traced peak in bytes per chunk."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = make()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, (peak - before) / count


class _Sink(ObjectStore):
    """Keeps nothing but the size of what is put (so stored objects cost no memory), and of
    chunks only if `chunks` (so that an incremental finds its parent's)."""

    def __init__(self, *, chunks: bool = False) -> None:
        self.sizes: dict[str, int] = {}
        self.chunks = chunks

    def put(self, key: str, data: bytes | memoryview) -> None:
        if self.chunks or not key.startswith("chunks/"):
            self.sizes[key] = len(data)

    def get(self, key: str) -> bytes:
        raise ObjectNotFound(key)

    def head(self, key: str) -> ObjectInfo:
        if key not in self.sizes:
            raise ObjectNotFound(key)
        return ObjectInfo(key, self.sizes[key], 0.0)

    def delete(self, key: str) -> None:
        pass

    def list(self, prefix: str) -> Iterator[str]:
        return iter(())


class _Distinct:
    """A volume of `count` tiny chunks, each different (no hole, no duplicate)."""

    chunk = 16

    def __init__(self, count: int) -> None:
        self.size = count * self.chunk

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        buffer[:] = b"%015d\n" % (offset // self.chunk)
        return len(buffer)

    def close(self) -> None:
        pass


def test_the_backup_pipeline_holds_under_150_bytes_a_chunk() -> None:
    """backup_chunks of 100,000 distinct chunks: the chunk list and the table of digests
    it has stored (about 110 bytes a chunk in columns; a dict of ChunkRefs took ~300)."""
    reader = _Distinct(COUNT)
    result, per_chunk = peak_bytes_per_chunk(
        lambda: backup_chunks(reader, _Sink(), chunk_size=_Distinct.chunk), COUNT
    )
    assert len(result.chunks) == COUNT and result.stats.chunks_new == COUNT
    assert per_chunk < 150, f"{per_chunk:.0f} bytes a chunk"


def test_an_incremental_holds_under_120_bytes_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """backup_chunks of 50,000 chunks with a parent of as many (its chunk list indexed in
    place, their stored sizes checked in batches): the table of known digests and the
    new list, about 75 bytes a chunk (the parent's chunks as a dict of ChunkRefs, copied
    into seeds, with a dict of their keys and one of their sizes, took about 350). The
    stored sizes are asked 4,096 at a time here, so that the batch, a constant, is small
    beside 50,000."""
    monkeypatch.setattr(backup_pipeline, "_SIZES_AT_ONCE", 4096)
    count = COUNT // 2
    store = _Sink(chunks=True)
    full = backup_chunks(_Distinct(count), store, chunk_size=_Distinct.chunk)
    parent = Manifest(
        backup_id="b1",
        volume_id="v",
        backend="local",
        size=count * _Distinct.chunk,
        chunk_size=_Distinct.chunk,
        codec="zstd",
        chunks=full.chunks,
        created=1.0,
        strategy="direct-stream",
    )
    del full
    result, per_chunk = peak_bytes_per_chunk(
        lambda: backup_chunks(
            _Distinct(count), store, chunk_size=_Distinct.chunk, parent=parent, known=parent.chunks
        ),
        count,
    )
    assert result.stats.chunks_reused == count and result.stats.chunks_new == 0
    assert result.chunks == parent.chunks
    assert per_chunk < 120, f"{per_chunk:.0f} bytes a chunk"


def _columns(count: int) -> ChunkListBuilder:
    builder = ChunkListBuilder()
    for i in range(count):
        d = hashlib.sha256(b"%d" % i).digest()
        builder.add_binary(i << 22, 1 << 22, d, "zstd", 2_000_000 + i)
    return builder


def test_from_the_transfer_result_to_the_stored_manifest_under_400_bytes_a_chunk() -> None:
    """The chunk list, its persisted form (what TaskFlow keeps), the list read back from it
    and the manifest encoded and put: about 300 bytes a chunk at the peak (rows of JSON
    lists, ChunkRefs and the manifest's bytes twice took about 650)."""
    chunks = _columns(COUNT).build()
    store = _Sink()

    def to_manifest() -> object:
        persisted = chunks.to_json()  # what TransferChunks returns
        manifest = Manifest(
            backup_id="b1",
            volume_id="v",
            backend="local",
            size=COUNT << 22,
            chunk_size=1 << 22,
            codec="zstd",
            chunks=chunk_list_from_json(persisted),  # what WriteManifest reads
            created=1.0,
            strategy="direct-stream",
        )
        write_manifest(store, manifest)
        return persisted

    _, per_chunk = peak_bytes_per_chunk(to_manifest, COUNT)
    assert store.sizes["manifests/b1.json"] > 100 * COUNT  # the manifest was encoded whole
    assert per_chunk < 400, f"{per_chunk:.0f} bytes a chunk"


def test_reading_a_manifest_under_200_bytes_a_chunk() -> None:
    """from_json of a 100,000-chunk manifest (an incremental reads its parent's; restore and
    verify read theirs): the chunk list and a batch of rows at a time, about 60 bytes a
    chunk beside the document's bytes (the whole document as JSON values, and its canonical
    JSON twice to check the sum, took about 600)."""
    manifest = _large_manifest(COUNT)
    data = manifest.to_json()
    read, per_chunk = peak_bytes_per_chunk(lambda: Manifest.from_json(data), COUNT)
    assert read == manifest
    assert per_chunk < 200, f"{per_chunk:.0f} bytes a chunk"


def _large_manifest(count: int, backup_id: str = "b1") -> Manifest:
    return Manifest(
        backup_id=backup_id,
        volume_id="v",
        backend="local",
        size=count << 22,
        chunk_size=1 << 22,
        codec="zstd",
        chunks=_columns(count).build(),
        created=1.0,
        strategy="direct-stream",
    )


def test_a_large_manifest_read_or_written_gives_the_free_heap_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a parent of 20,000 chunks and writing a manifest of as many each return the
    heap's free pages once (`heap.release_free_heap`), while small manifests (a store
    listing many) do not: without it, glibc kept resident what an incremental freed after
    its parent's manifest bytes (peak RSS of ``bench/rss_scale.py --incremental`` 319 bytes
    a chunk, 130 MiB projected at 1 TiB; 205 and 105 MiB with it)."""
    calls: list[int] = []

    def release(freed_bytes: int = heap.LARGE_BYTES) -> bool:
        calls.append(freed_bytes)
        return False

    monkeypatch.setattr(manifest_store, "release_free_heap", release)
    store = PosixStore(str(tmp_path / "store"))
    write_manifest(store, _large_manifest(20_000))
    assert len(calls) == 1, "writing a large manifest returns the free heap first"
    assert latest_manifest(store, "v") is not None
    assert len(calls) == 2 and calls[-1] >= heap.LARGE_BYTES, "reading it gives its bytes back"
    calls.clear()
    write_manifest(store, _large_manifest(10, "b2"))
    read_manifest(store, "b2")
    assert [c for c in calls if c >= heap.LARGE_BYTES] == []


def test_release_free_heap_does_nothing_below_a_mebibyte() -> None:
    """Small frees are not worth a trim; a large one asks glibc (True if it gave pages back)."""
    assert heap.release_free_heap(heap.LARGE_BYTES - 1) is False
    assert isinstance(heap.release_free_heap(), bool)
