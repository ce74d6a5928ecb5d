"""A replication's copy, by strategy: native, stream, or via the store.

`ReplicaCopier` is the work of `replicate.CopyVolume`, in process or on a
worker (`replicate.ReplicaCopy`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing
from typing import Any

from taskflow import task

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.encryption_lock import require_still_plain
from pieceworks.common_algorithms.format.chunk_pipeline import backup_chunks, restore_chunks
from pieceworks.common_algorithms.format.chunk_ranges import coalesce
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.common_algorithms.format.stream_copy import check_copy, copy_stream
from pieceworks.common_algorithms.gc.leases import acquire_lease, lease_renewed, release_lease
from pieceworks.common_algorithms.operations.backup_step import source_ref
from pieceworks.common_algorithms.operations.planning import via_store_sides
from pieceworks.common_algorithms.operations.requests import ReplicateRequest
from pieceworks.common_algorithms.operations.targets import require_still_absent
from pieceworks.common_algorithms.progress import ProgressReporter
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    ChunkRef,
    IAllocatedExtents,
    IReplicateToPeer,
    IStreamIn,
    IStreamOut,
    Source,
    VolumeRef,
)
from pieceworks.protocols.chunks import DEFAULT_CODEC

__all__ = ["ReplicaCopier"]

#: What a replication stopped by a late key file (`require_still_plain`) left.
_STAGED_ONLY = (
    "it stopped with its chunks staged, and the target volume was not written from them"
    " (they are unreferenced: `pieceworks prune` removes them)"
)


class ReplicaCopier:
    """Copies the source into the target volume; `copy` is the whole of it.

    `store` is None for the strategies that need none; `reporter` is the
    task whose notifier gets the progress events (the in-process
    `CopyVolume`, or a worker's `ReplicaCopy`).
    """

    def __init__(
        self,
        source: Backend,
        target: Backend,
        store: Store | None,
        request: ReplicateRequest,
        reporter: task.Task,
    ) -> None:
        self.source, self.target, self.store, self.request = source, target, store, request
        self.reporter = reporter

    def copy(self, attempt: dict[str, Any], source: dict[str, str | None]) -> dict[str, Any]:
        """Copy by ``attempt["strategy"]``; the copy's result row."""
        started = time.monotonic()
        ref = source_ref(source)
        target = VolumeRef(self.request.target_volume)
        if not self.request.overwrite:  # CheckReplicaTarget found it free: is it still?
            require_still_absent(self.target, target.volume_id, operation="replicate")
        strategy = str(attempt["strategy"])
        if strategy == "native":
            assert self.target.spec is not None
            done = self.source.use(IReplicateToPeer).replicate_to(ref, self.target.spec, target)
            out = {
                "size": done.size,
                "bytes_through_manager": 0,
                "bytes_sent": done.bytes_sent,
                "verified": "by the backend",
            }
        elif strategy == "stream":
            out = self._stream(ref, target)
        else:
            out = self._via_store(ref, target)
        out["seconds"] = round(time.monotonic() - started, 6)
        return out

    def _stream(self, ref: Source, target: VolumeRef) -> dict[str, Any]:
        extents = None
        if self.source.provides(IAllocatedExtents):
            extents = self.source.use(IAllocatedExtents).allocated_extents(ref)
        with closing(self.source.use(IStreamOut).open_read(ref)) as reader:
            writer = self.target.use(IStreamIn).open_write(target, reader.size)
            try:
                stats = copy_stream(
                    reader,
                    writer,
                    chunk_size=self.request.chunk_size,
                    extents=extents,
                    progress=ProgressReporter(self.reporter, reader.size),
                )
            except BaseException:
                writer.abort()
                raise
            writer.commit()
        verified = "not read back (the target has no stream-out)"
        if self.target.provides(IStreamOut):
            check_copy(self.target.use(IStreamOut).open_read(target), stats)
            verified = "every data chunk read back and hashed"
        return {
            "size": stats.size,
            "bytes_read": stats.bytes_read,
            "bytes_through_manager": stats.bytes_read + stats.bytes_written,
            "verified": verified,
        }

    def _via_store(self, ref: Source, target: VolumeRef) -> dict[str, Any]:
        """Stage the chunks in the store, then fill the target from them.

        Each side uses its backend's own path when it has one (push, pull:
        no byte through the manager) and the manager's pipelines otherwise.
        The staged chunks are referenced by no manifest: the lease keeps GC
        away until the target has them, and the next GC removes them (unless
        a backup shares them). A store opened plain that a ``key init``
        encrypts meanwhile stops the copy (`StoreEncryptedMeanwhile`): looked
        for once the lease is written, before staging, and (key files) before
        the staged chunks are read back (`encryption_lock`).
        """
        assert self.store is not None
        out_side, in_side = via_store_sides(self.source, self.target)
        op = self.request.operation_id
        failpoint("replicate.before-lease")
        token = acquire_lease(self.store.objects, op).token
        try:
            with lease_renewed(self.store.objects, op, token):
                require_still_plain(self.store.name, self.store.objects, writer="replication")
                size, chunks, read, through = self._stage(ref, out_side)
                failpoint("replicate.staged")
                require_still_plain(
                    self.store.name,
                    self.store.objects,
                    before_data=False,
                    writer="replication",
                    late=_STAGED_ONLY,
                )
                through += self._unstage(target, size, chunks, in_side)
        finally:
            release_lease(self.store.objects, op, token)
        return {
            "size": size,
            "bytes_read": read,
            "bytes_through_manager": through,
            "verified": "every chunk hashed as it was written to the target",
        }

    def _stage(self, ref: Source, side: str | None) -> tuple[int, Sequence[ChunkRef], int, int]:
        assert self.store is not None
        if side == "push":
            codec = self.source.push_codec(DEFAULT_CODEC)
            pushed = self.store.push(self.source, ref, self.request.chunk_size, codec)
            return pushed.size, pushed.chunks, pushed.bytes_read, 0
        extents = None
        if self.source.provides(IAllocatedExtents):
            extents = self.source.use(IAllocatedExtents).allocated_extents(ref)
        with closing(self.source.use(IStreamOut).open_read(ref)) as reader:
            if extents is not None:  # by chunk: see `coalesce`
                extents = coalesce(extents, reader.size, self.request.chunk_size)
            result = backup_chunks(
                reader,
                self.store.objects,
                chunk_size=self.request.chunk_size,
                extents=extents,
                progress=ProgressReporter(self.reporter, reader.size),
            )
            size = reader.size
        return size, result.chunks, result.stats.bytes_read, result.stats.bytes_read

    def _unstage(
        self, target: VolumeRef, size: int, chunks: Sequence[ChunkRef], side: str | None
    ) -> int:
        assert self.store is not None
        if not self.request.overwrite:  # staging took a while: is the target still free?
            require_still_absent(self.target, target.volume_id, operation="replicate")
        if side == "pull":
            self.store.pull(self.target, target, size, chunks)
            return 0
        staged = Manifest(
            backup_id=self.request.operation_id,
            volume_id=self.request.volume_id,
            backend=self.source.name,
            size=size,
            chunk_size=self.request.chunk_size,
            codec="zstd",
            chunks=chunks,
            created=time.time(),
            strategy="via-store",
        )
        writer = self.target.use(IStreamIn).open_write(target, size)
        try:
            stats = restore_chunks(self.store.objects, staged, writer)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
        return stats.bytes_written
