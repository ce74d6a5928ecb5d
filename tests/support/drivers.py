"""Real drivers for tests: the file driver plus offload, and failure injection.

`OffloadFileDriver` is a real backend that pushes a file volume's chunks into
a POSIX store by itself (and pulls them back), as a wire-length backend
would. The `Failing*` subclasses fail one named step for real, so tests can
check the fallback order, the cleanup and the record of each strategy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import closing

from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    ChunkRef,
    Compress,
    PullFromObjectStore,
    PushedVolume,
    PushToObjectStore,
    ReplicatedVolume,
    Source,
    StoreSpec,
    StreamIn,
    StreamOut,
    VolumeReader,
    VolumeRef,
    VolumeWriter,
)
from pieceworks.protocols.chunks import (
    chunk_key,
    codec_of,
    decode_chunk,
    digest_of,
    encode_chunk,
    is_zero,
)


class OffloadFileDriver(FileDriver, PushToObjectStore, PullFromObjectStore, Compress):
    """The file driver, able to write to and read from a POSIX store itself."""

    def compression_codecs(self) -> Sequence[str]:
        return ("zstd", "zlib")

    def push_to_store(
        self, source: Source, store: StoreSpec, chunk_size: int, codec: str
    ) -> PushedVolume:
        target = PosixStore(store.options["path"])
        chunks: list[ChunkRef] = []
        read = written = 0
        buffer = bytearray(chunk_size)
        # The backend's own read path, not the manager's stream-out.
        with closing(FileDriver.open_read(self, source)) as reader:
            size = reader.size
            for offset in range(0, size, chunk_size):
                n = reader.readinto_at(offset, memoryview(buffer))
                data = memoryview(buffer)[:n]
                read += n
                if is_zero(data):
                    continue
                digest = digest_of(data)
                stored = encode_chunk(data, codec)
                if target.put_if_absent(chunk_key(digest), stored):
                    written += len(stored)
                chunks.append(ChunkRef(offset, n, digest, codec_of(stored), len(stored)))
        return PushedVolume(size, tuple(chunks), read, written)

    def pull_from_store(
        self, target: VolumeRef, size: int, store: StoreSpec, chunks: Sequence[ChunkRef]
    ) -> None:
        source = PosixStore(store.options["path"])
        writer = self.open_write(target, size)
        try:
            for ref in chunks:
                stored = source.get(chunk_key(ref.digest))
                writer.write_at(
                    ref.offset, decode_chunk(stored, ref.digest, ref.length, ref.offset)
                )
        except BaseException:
            writer.abort()
            raise
        writer.commit()


class FailingReader:
    """A reader that fails after handing out `good` bytes, like a dying disk."""

    def __init__(self, inner: VolumeReader, good: int) -> None:
        self.inner, self.good = inner, good

    @property
    def size(self) -> int:
        return self.inner.size

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        if offset + len(buffer) > self.good:
            raise BackendError(f"read error at offset {offset}")
        return self.inner.readinto_at(offset, buffer)

    def close(self) -> None:
        self.inner.close()


class FailingDriver(OffloadFileDriver):
    """Fails the steps named in `fail`: ``push``, ``pull``, ``replicate``,
    ``read-snapshot`` and ``read-volume`` (half-way through). Records calls."""

    def __init__(self, path: str | os.PathLike[str], fail: Sequence[str] = ()) -> None:
        super().__init__(path)
        self.fail = set(fail)
        self.calls: list[str] = []

    def push_to_store(
        self, source: Source, store: StoreSpec, chunk_size: int, codec: str
    ) -> PushedVolume:
        self.calls.append("push")
        if "push" in self.fail:
            # Write part of the data first, as a real failing push would.
            super().push_to_store(source, store, chunk_size, codec)
            raise BackendError("push to store failed: connection reset")
        return super().push_to_store(source, store, chunk_size, codec)

    def open_read(self, source: Source) -> VolumeReader:
        kind = "read-snapshot" if hasattr(source, "snapshot_id") else "read-volume"
        self.calls.append(kind)
        reader = super().open_read(source)
        if kind in self.fail:
            return FailingReader(reader, good=reader.size // 2)
        return reader

    def pull_from_store(
        self, target: VolumeRef, size: int, store: StoreSpec, chunks: Sequence[ChunkRef]
    ) -> None:
        self.calls.append("pull")
        if "pull" in self.fail:
            raise BackendError("pull from store failed: timeout")
        super().pull_from_store(target, size, store, chunks)

    def replicate_to(
        self, source: Source, peer: BackendSpec, target: VolumeRef
    ) -> ReplicatedVolume:
        self.calls.append("replicate")
        if "replicate" in self.fail:
            raise BackendError("peer refused the copy")
        return super().replicate_to(source, peer, target)

    def snapshots_alive(self, volume_id: str) -> list[str]:
        folder = os.path.join(self.root, ".snapshots", volume_id)
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


class StreamOnlyDriver(StreamOut, StreamIn):
    """A backend that can only stream bytes in and out (no snapshot): a file
    driver's volumes seen through stream-out and stream-in alone."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.files = FileDriver(path)

    def open_read(self, source: Source) -> VolumeReader:
        return self.files.open_read(source)

    def open_write(self, target: VolumeRef, size: int) -> VolumeWriter:
        return self.files.open_write(target, size)
