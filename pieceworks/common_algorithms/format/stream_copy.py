"""Copy a volume from one backend's stream-out into another's stream-in.

Sparse-aware (holes and all-zero chunks are not written: the target reads
zeros there) and hashed end to end: every data chunk's sha256 is taken as
it is read and, when the target can stream out too, checked again by
reading the committed target back. Hashing runs on a worker thread (sha256
releases the GIL) while the next chunk is read; memory is `depth` buffers.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from pieceworks.failpoints import failpoint
from pieceworks.protocols import CorruptionError, Extent, ShortRead, VolumeReader, VolumeWriter
from pieceworks.protocols.chunks import is_zero

__all__ = ["CopyStats", "check_copy", "copy_stream"]


@dataclass(frozen=True)
class CopyStats:
    """What a stream copy read and wrote, and the digest of every data chunk."""

    size: int
    bytes_read: int
    bytes_written: int
    digests: tuple[tuple[int, int, str], ...]  # (offset, length, sha256)
    seconds: float


def _chunks(size: int, chunk_size: int, extents: Sequence[Extent] | None) -> Iterator[int]:
    if extents is None:
        yield from range(0, size, chunk_size)
        return
    last = -1
    for extent in extents:
        first = extent.offset // chunk_size
        end = min(extent.end, size)
        for index in range(first, (end + chunk_size - 1) // chunk_size):
            if index > last:
                last = index
                yield index * chunk_size


def copy_stream(
    reader: VolumeReader,
    writer: VolumeWriter,
    *,
    chunk_size: int,
    extents: Sequence[Extent] | None = None,
    depth: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> CopyStats:
    """Copy every data chunk of `reader` into `writer` (which the caller commits).

    Raise `ShortRead` ("short read at offset ...") when the reader returns
    fewer bytes than its `size` promises (the source shrank mid-copy); the
    caller then aborts `writer`. Reader and writer errors propagate as is.
    """
    started = time.monotonic()
    size = reader.size
    buffers = deque(bytearray(chunk_size) for _ in range(depth))
    pending: deque[tuple[int, int, bytearray, Future[str]]] = deque()
    digests: list[tuple[int, int, str]] = []
    read = written = 0

    def drain(limit: int) -> None:
        nonlocal written
        while len(pending) > limit:
            offset, n, buf, digest = pending.popleft()
            writer.write_at(offset, memoryview(buf)[:n])
            failpoint("replicate.chunk-copied")
            written += n
            digests.append((offset, n, digest.result()))
            buffers.append(buf)

    with ThreadPoolExecutor(1, thread_name_prefix="pieceworks-copy-hash") as pool:
        for offset in _chunks(size, chunk_size, extents):
            drain(depth - 1)
            buf = buffers.popleft()
            length = min(chunk_size, size - offset)
            n = reader.readinto_at(offset, memoryview(buf)[:length])
            read += n
            if n != length:  # the source shrank: never fill the rest with zeros
                raise ShortRead(
                    f"short read at offset {offset}: got {n} of {length} bytes; the source is"
                    f" shorter than its reported size {size}"
                )
            view = memoryview(buf)[:n]
            if is_zero(view):
                buffers.append(buf)
            else:
                pending.append((offset, n, buf, pool.submit(_sha256, view)))
            if progress is not None:
                progress(offset + n, size)
        drain(0)
    if progress is not None:
        progress(size, size)
    return CopyStats(size, read, written, tuple(digests), time.monotonic() - started)


def _sha256(data: memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def check_copy(reader: VolumeReader, stats: CopyStats) -> None:
    """Read the target back and compare every data chunk with its source digest.

    Raise `CorruptionError` naming the first offset that differs.
    """
    if reader.size != stats.size:
        raise CorruptionError(f"target size {reader.size} differs from source size {stats.size}")
    buf = bytearray(max((n for _, n, _ in stats.digests), default=0))
    with closing(reader):
        for offset, n, digest in stats.digests:
            got = reader.readinto_at(offset, memoryview(buf)[:n])
            if got != n or _sha256(memoryview(buf)[:n]) != digest:
                raise CorruptionError(
                    f"replicated chunk at offset {offset} differs from the source", offset
                )
