"""A backup's transfer: the chunks of its source into the store, by strategy.

`ChunkTransfer` is the work of `backup_tasks.TransferChunks`, in process or
on a worker (`backup_tasks.BackupTransfer`): read the parent manifest of an
incremental, then stream the source through the chunk pipeline (with the
enhancers and the guard against a lying driver) or have the backend push it
(offload). Its result is the transfer result TaskFlow persists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import closing
from typing import Any, Final

from taskflow import task

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.format.chunk_pipeline import BackupResult, backup_chunks
from pieceworks.common_algorithms.format.chunk_ranges import coalesce
from pieceworks.common_algorithms.format.manifest import (
    Manifest,
    known_chunks,
    latest_manifest,
)
from pieceworks.common_algorithms.operations.backup_step import source_ref
from pieceworks.common_algorithms.operations.guard import (
    driver_name,
    enhancer_savings,
    plan_guard,
    unguarded,
)
from pieceworks.common_algorithms.operations.requests import BackupRequest
from pieceworks.common_algorithms.progress import ProgressReporter
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    BackendError,
    Extent,
    IAllocatedExtents,
    IChangedBlocks,
    IStreamOut,
    PushedVolume,
    Source,
    TransientError,
    VolumeReader,
)
from pieceworks.protocols.chunk_list import ChunkList
from pieceworks.protocols.errors import ChangeTrackingLost
from pieceworks.protocols.values import chunks_to_json

__all__ = ["COLUMNS", "ROWS", "ChunkTransfer"]

#: The forms of a transfer result's chunks: `ChunkList.to_json`'s, and the
#: `chunks_to_json` rows of the versions before it.
COLUMNS: Final = "columns"
ROWS: Final = "rows"

log = logging.getLogger(__name__)


def _chunks_written(pushed: PushedVolume) -> int:
    """How many chunk objects an offload push wrote (0 if the driver does not say and
    wrote no byte; a driver that wrote bytes without saying how many objects reports 0)."""
    return pushed.chunks_written or 0


class ChunkTransfer:
    """Moves a backup's chunks into the store; `transfer` is the whole of it.

    `reporter` is the task whose notifier gets the progress events (the
    in-process `TransferChunks`, or a worker's `BackupTransfer`).
    """

    def __init__(
        self, backend: Backend, store: Store, request: BackupRequest, reporter: task.Task
    ) -> None:
        self.backend = backend
        self.store = store
        self.request = request
        self.reporter = reporter

    def transfer(
        self, attempt: dict[str, Any], source: dict[str, str | None], chunk_form: str = COLUMNS
    ) -> dict[str, Any]:
        """Move the chunks of `source` by ``attempt["strategy"]``; the transfer result.

        A JSON-serialisable dict (TaskFlow persists it). Its ``chunks`` are in
        `ChunkList.to_json`'s columns form (about 50 bytes a chunk), or with
        `chunk_form` ``"rows"`` as `chunks_to_json` rows (about 300 bytes a
        chunk in memory), what a worker sends (see `BackupTransfer`).
        """
        started = time.monotonic()
        ref = source_ref(source)
        parent = (
            latest_manifest(self.store.objects, self.request.volume_id, backend=self.backend.name)
            if self.request.incremental
            else None
        )
        if parent is not None:
            failpoint("incremental.parent-read")
        offload = attempt["strategy"] == "offload"
        out = self._offload(ref, parent) if offload else self._stream(ref, parent)
        out["parent"] = parent.backup_id if parent else None
        del parent  # its chunk list is not needed to encode this one's: not both at once
        chunks: ChunkList = out["chunks"]
        out["chunks"] = chunks.to_json() if chunk_form == COLUMNS else chunks_to_json(chunks)
        del chunks  # the list goes with this frame: the persisted form is what is kept
        out["seconds"] = round(time.monotonic() - started, 6)
        return out

    def _offload(self, ref: Source, parent: Manifest | None) -> dict[str, Any]:
        codec = self.backend.push_codec(self.request.codec)
        known = tuple(known_chunks([parent]).values()) if parent else ()
        pushed = self.store.push(self.backend, ref, self.request.chunk_size, codec, known)
        slots = -(-pushed.size // self.request.chunk_size)  # chunks the volume spans
        return {
            "size": pushed.size,
            "chunks": ChunkList.of(pushed.chunks),
            "bytes_read": pushed.bytes_read,
            "bytes_stored": pushed.bytes_written,
            "bytes_through_manager": 0,
            # The report said "0 new chunks" and "0 holes" for every offload backup.
            "chunks_new": _chunks_written(pushed),
            "holes": max(0, slots - len(pushed.chunks)),
            "codec": codec,
            "change_token": None,
            "enhancers_used": {},
            "guard": None,
        }

    def _stream(self, ref: Source, parent: Manifest | None) -> dict[str, Any]:
        driver = self.backend.use(IStreamOut)
        extents = None
        if self.backend.provides(IAllocatedExtents):
            extents = self.backend.use(IAllocatedExtents).allocated_extents(ref)
        with closing(driver.open_read(ref)) as reader:
            size = reader.size
            # by chunk, not by driver extent: the same chunks, without a list as long as
            # the volume is fragmented held for the whole backup (`coalesce`)
            if extents is not None:
                extents = coalesce(extents, size, self.request.chunk_size)
            token, changed, notes = self._changes(ref, parent, size)
            if changed is not None:
                changed = coalesce(changed, size, self.request.chunk_size)
            plan = plan_guard(
                size,
                self.request.chunk_size,
                extents=extents,
                changed=changed,
                parent=parent.chunk_map() if changed is not None and parent else None,
                percent=self.request.guard_percent,
                max_chunks=self.request.guard_max_chunks,
            )
            result = self._chunks(reader, parent, plan.extents, plan.changed)
        guard = plan.check(result.chunks, self.backend.name, driver_name(self.backend.driver))
        read, stored = result.stats.bytes_read, result.stats.bytes_stored
        if guard.lies:  # the driver lied: no enhancer, read everything (no lie in the manifest)
            with closing(driver.open_read(ref)) as reader:
                size = reader.size
                plan = unguarded(size, self.request.chunk_size)
                result = self._chunks(reader, parent, None, None)
            read, stored = read + result.stats.bytes_read, stored + result.stats.bytes_stored
        stats = result.stats
        return {
            "size": size,
            "chunks": result.chunks,
            "bytes_read": read,
            "bytes_stored": stored,
            "bytes_through_manager": read,
            "chunks_new": stats.chunks_new,
            "chunks_reused": stats.chunks_reused,
            "holes": stats.holes,
            "codec": self.request.codec,
            "change_token": token,
            "enhancers_used": enhancer_savings(plan, stats.bytes_read),
            "guard": guard.to_dict(),
            "notes": notes,
        }

    def _chunks(
        self,
        reader: VolumeReader,
        parent: Manifest | None,
        extents: Sequence[Extent] | None,
        changed: Sequence[Extent] | None,
    ) -> BackupResult:
        """One pass of `backup_chunks` over `reader` (`changed` None: read everything)."""
        return backup_chunks(
            reader,
            self.store.objects,
            chunk_size=self.request.chunk_size,
            codec=self.request.codec,
            extents=extents,
            read_only=changed,
            reuse=parent.chunk_map() if changed is not None and parent else None,
            known=parent.chunks if parent else None,  # its columns: no dict of refs
            progress=ProgressReporter(self.reporter, reader.size),
        )

    def _changes(
        self, ref: Source, parent: Manifest | None, size: int
    ) -> tuple[str | None, Sequence[Extent] | None, list[str]]:
        """This backup's change token, the ranges changed since the parent's, and notes.

        ``None`` ranges mean "read everything": no changed-blocks, no usable
        parent (none, another chunk size or volume size, or one made from
        another backend, whose token means nothing to this one), or the
        backend lost track (`ChangeTrackingLost`). A token the backend
        cannot record (a `BackendError` other than a `TransientError`: an
        RBD pool that is full refuses the snapshot that holds it) does not
        stop the backup, which needs none: it goes on without one, and the
        next incremental reads everything. The notes say so, for the
        backup's warnings: either way the backup read more than the user
        expected and must be told why.
        """
        if not self.backend.provides(IChangedBlocks):
            return None, None, []
        tracker = self.backend.use(IChangedBlocks)
        notes: list[str] = []
        token: str | None
        try:
            token = tracker.change_token(ref)
        except TransientError:
            raise
        except BackendError as exc:  # not NotFound: a source that is gone ends the backup
            log.warning("backup %s: no change-tracking base: %s", self.request.backup_id, exc)
            notes.append(
                f"no change-tracking base could be recorded ({exc}): the next incremental"
                " backup of this volume reads it whole"
            )
            token = None
        if (
            parent is None
            or not parent.change_token
            or parent.backend != self.backend.name
            or parent.chunk_size != self.request.chunk_size
            or parent.size != size
        ):
            return token, None, notes
        try:
            return token, tracker.changed_extents(ref, parent.change_token), notes
        except ChangeTrackingLost as exc:
            log.warning("backup %s: %s", self.request.backup_id, exc)
            notes.append(
                f"the backend lost track of the changes since backup {parent.backup_id} ({exc}):"
                " the whole volume was read"
            )
            return token, None, notes
