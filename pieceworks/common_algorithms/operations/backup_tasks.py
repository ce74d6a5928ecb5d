"""The TaskFlow tasks a backup flow is made of.

Each task holds the backend, the store and the request it works for (the
in-process engines run them in place) and exchanges small JSON-able values
through TaskFlow's storage, so that every step is persisted:

=================  ==========================================  ===================
task               does                                        on revert
=================  ==========================================  ===================
TakeLease          writes the store lease (waits out a GC),    removes the lease if
                   refuses if another live run holds it, or    this run took it
                   if a plain store is being encrypted
PrepareSource      takes a temporary snapshot if the strategy  deletes it (its name
                   reads one (journaled first); else names     holds the run token)
                   the volume
TransferChunks     streams chunks through the manager, or has  nothing: chunks
                   the backend push them (offload)             stay unreferenced
ReleaseSource      deletes the temporary snapshot              (idempotent delete)
WriteManifest      writes the manifest, last and atomically    nothing (last step)
ReleaseLease       removes the lease                           -
=================  ==========================================  ===================

TransferChunks may run its work on a worker next to the data
(`BackupTransfer`, see `placement`); every other step runs where the flow runs.

TakeLease provides the run token (``backup-<id>.lease``); every later step
uses it, so that each cleanup removes only what this run created: the lease
(its content names the token), the temporary snapshot (its name ends with
the token) and the run journal ``runs/<token>``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import closing
from typing import Any, Final

from taskflow import task

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.encryption_lock import require_still_plain
from pieceworks.common_algorithms.format.backup_pipeline import unstored_chunks
from pieceworks.common_algorithms.format.chunk_pipeline import BackupResult, backup_chunks
from pieceworks.common_algorithms.format.chunk_ranges import coalesce
from pieceworks.common_algorithms.format.manifest import (
    Manifest,
    known_chunks,
    latest_manifest,
    write_manifest,
)
from pieceworks.common_algorithms.gc.leases import (
    ChunksCollected,
    acquire_lease,
    forget_temporary,
    lease_renewed,
    record_temporary,
    release_lease,
)
from pieceworks.common_algorithms.operations.guard import (
    driver_name,
    enhancer_savings,
    guard_stats,
    plan_guard,
    unguarded,
)
from pieceworks.common_algorithms.operations.plan import Plan
from pieceworks.common_algorithms.operations.requests import (
    BackupRequest,
    decode_request,
    request_fields,
)
from pieceworks.common_algorithms.operations.reverts import guarded
from pieceworks.common_algorithms.placement import (
    DataStep,
    RemoteStep,
    declining,
    host,
    run_data_step,
)
from pieceworks.common_algorithms.progress import ProgressReporter
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    BackendError,
    ChunkRef,
    Extent,
    IAllocatedExtents,
    IChangedBlocks,
    IObjectStore,
    ISnapshot,
    IStreamOut,
    PushedVolume,
    SnapshotRef,
    Source,
    TransientError,
    VolumeReader,
    VolumeRef,
)
from pieceworks.protocols.chunk_list import ChunkList, chunk_list_from_json
from pieceworks.protocols.chunks import chunk_key
from pieceworks.protocols.errors import ChangeTrackingLost
from pieceworks.protocols.values import chunks_from_json, chunks_to_json

__all__ = [
    "BackupTransfer",
    "plan_stats",
    "PrepareSource",
    "ReleaseLease",
    "ReleaseSource",
    "TakeLease",
    "TransferChunks",
    "WriteManifest",
    "chunks_from_json",
    "chunks_to_json",
    "temporary_snapshot_id",
]

#: The forms of a transfer result's chunks: `ChunkList.to_json`'s, and the
#: `chunks_to_json` rows of the versions before it.
COLUMNS: Final = "columns"
ROWS: Final = "rows"

log = logging.getLogger(__name__)

#: Strategies that read a temporary snapshot when the backend can take one.
_SNAPSHOT_WHEN_IN_USE = {"offload"}
_ALWAYS_SNAPSHOT = {"snapshot-stream"}


def temporary_snapshot_id(backup_id: str, strategy: str, token: str) -> str:
    """The name of the temporary snapshot a run (`token`) takes for `strategy`.

    ``pw-<backup_id>-<strategy>-<token>``, or ``pw-<token>-<strategy>`` when
    that would exceed an id's 128 characters: always this run's own.
    """
    name = f"pw-{backup_id}-{strategy}-{token}"
    return name if len(name) <= 128 else f"pw-{token}-{strategy}"


def _chunks_written(pushed: PushedVolume) -> int:
    """How many chunk objects an offload push wrote (0 if the driver does not say and
    wrote no byte; a driver that wrote bytes without saying how many objects reports 0)."""
    return pushed.chunks_written or 0


def source_ref(source: dict[str, str | None]) -> Source:
    """The `VolumeRef` or `SnapshotRef` a PrepareSource result names."""
    volume_id, snapshot_id = str(source["volume_id"]), source.get("snapshot_id")
    return SnapshotRef(volume_id, snapshot_id) if snapshot_id else VolumeRef(volume_id)


class _BackupTask(task.Task):
    def __init__(
        self,
        step: str,
        backend: Backend,
        store: Store,
        request: BackupRequest,
        prefix: str,
        provides: str | None = None,
        requires: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            name=f"{prefix}.{step}",
            provides=f"{prefix}.{provides}" if provides else None,
            rebind={k: f"{prefix}.{v}" for k, v in (requires or {}).items()} or None,
        )
        self.backend = backend
        self.store = store
        self.request = request


class TakeLease(_BackupTask):
    """Hold the store's lease for this backup, so GC never races it.

    Provides ``{"token": run token}``. Raises `BackupInProgress` (having
    changed nothing) if another live run holds the lease of this backup id,
    and `StoreEncryptedMeanwhile` (its lease removed again) if the store was
    opened plain and a ``key init`` has encrypted it since, or is at it.
    """

    def __init__(self, backend: Backend, store: Store, request: BackupRequest, prefix: str) -> None:
        super().__init__("take-lease", backend, store, request, prefix, provides="lease")

    def execute(self) -> dict[str, str]:
        failpoint("backup.before-lease")
        lease = acquire_lease(self.store.objects, self.request.backup_id)
        try:
            # A `key init` that ran since the store was opened as plain: stop now (see
            # `encryption_lock`), before any plain data lands in a store turning encrypted.
            require_still_plain(self.store.name, self.store.objects)
            failpoint("backup.lease-taken")
        except BaseException:  # TaskFlow reverts a failed task without its result
            release_lease(self.store.objects, self.request.backup_id, lease.token)
            raise
        return {"token": lease.token}

    def revert(self, result: object, **kwargs: Any) -> None:
        """Remove the lease if this run took it (a refused run took nothing)."""
        if isinstance(result, dict) and result.get("token"):
            token = str(result["token"])
            guarded(
                self,
                "release the store lease",
                lambda: release_lease(self.store.objects, self.request.backup_id, token),
            )


class PrepareSource(_BackupTask):
    """Decide what the current strategy reads: a temporary snapshot or the volume."""

    def __init__(self, backend: Backend, store: Store, request: BackupRequest, prefix: str) -> None:
        super().__init__(
            "prepare-source",
            backend,
            store,
            request,
            prefix,
            provides="source",
            requires={"attempt": "attempt", "lease": "lease"},
        )

    def _wants_snapshot(self, strategy: str) -> bool:
        wants = strategy in _ALWAYS_SNAPSHOT or (
            strategy in _SNAPSHOT_WHEN_IN_USE and self.request.in_use
        )
        return wants and self.backend.provides(ISnapshot)

    def _entry(self, strategy: str, token: str) -> dict[str, str]:
        snap_id = temporary_snapshot_id(self.request.backup_id, strategy, token)
        return {
            "backend": self.backend.name,
            "volume_id": self.request.volume_id,
            "snapshot_id": snap_id,
        }

    def execute(self, attempt: dict[str, Any], lease: dict[str, str]) -> dict[str, str | None]:
        strategy = str(attempt["strategy"])
        volume = VolumeRef(self.request.volume_id)
        if self._wants_snapshot(strategy):
            driver = self.backend.use(ISnapshot)
            entry = self._entry(strategy, lease["token"])
            record_temporary(
                self.store.objects, lease["token"], f"backup-{self.request.backup_id}", entry
            )
            snapshot = driver.create_snapshot(volume, entry["snapshot_id"])
            failpoint("backup.snapshot-created")
            return {"volume_id": volume.volume_id, "snapshot_id": snapshot.snapshot_id}
        return {"volume_id": volume.volume_id, "snapshot_id": None}

    def revert(
        self, attempt: dict[str, Any], lease: dict[str, str], result: object, **kwargs: Any
    ) -> None:
        """Delete this run's temporary snapshot whether or not `execute` returned it."""
        strategy = str(attempt["strategy"])
        if not self._wants_snapshot(strategy):
            return
        entry = self._entry(strategy, lease["token"])

        def undo() -> None:
            self.backend.use(ISnapshot).delete_snapshot(
                SnapshotRef(entry["volume_id"], entry["snapshot_id"])
            )
            forget_temporary(self.store.objects, lease["token"], entry)
            failpoint("backup.source-reverted")

        guarded(self, f"delete the temporary snapshot {entry['snapshot_id']}", undo)


class TransferChunks(DataStep, _BackupTask):
    """Move the source's chunks into the store by the current strategy.

    The work (`transfer`) runs on a worker that serves the backend when the
    conductor has a dispatcher and a worker takes it (as `BackupTransfer`),
    else in process; the lease is renewed here either way.
    """

    def __init__(self, backend: Backend, store: Store, request: BackupRequest, prefix: str) -> None:
        super().__init__(
            "transfer-chunks",
            backend,
            store,
            request,
            prefix,
            provides="transfer",
            requires={"attempt": "attempt", "source": "source", "lease": "lease"},
        )

    #: The task whose notifier gets the progress events (a worker's `BackupTransfer`).
    reporter: task.Task | None = None

    def execute(
        self, attempt: dict[str, Any], source: dict[str, str | None], lease: dict[str, str]
    ) -> dict[str, Any]:
        """Transfer on a worker of the backend if one takes it, else here; the lease stays fresh."""
        arguments = {
            "backend": self.backend.name,
            "store": self.store.name,
            "request": request_fields(self.request),
            "attempt": attempt,
            "source": source,
        }
        with lease_renewed(self.store.objects, self.request.backup_id, lease["token"]):
            out = run_data_step(
                self,
                BackupTransfer,
                self.backend.name,
                arguments,
                lambda: self.transfer(attempt, source),
            )
        failpoint("backup.transfer-done")
        return out

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
            progress=ProgressReporter(self.reporter or self, reader.size),
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


class BackupTransfer(RemoteStep):
    """`TransferChunks`'s work on a worker: built from its name, given names and values.

    `backend` and `store` are names opened from this host's configuration
    (`placement.host`); `request` holds `BackupRequest`'s fields; `attempt`
    and `source` are the results of the fallback retry and `PrepareSource`.
    Returns the transfer result with its chunks as `chunks_to_json` rows, as
    every version before the columns form did: a conductor of such a version
    reads only rows, and workers are upgraded first (docs/scale.md, rolling
    upgrades). The memory the columns save is the in-process run's, a
    command line's; a worker's result is JSON on the wire either way.
    """

    def work(  # type: ignore[override]
        self,
        backend: str,
        store: str,
        request: dict[str, Any],
        attempt: dict[str, Any],
        source: dict[str, str | None],
    ) -> dict[str, Any]:
        sections = host()
        with declining():
            step = TransferChunks(
                sections.backend(backend),
                sections.store(store),
                decode_request(BackupRequest, request),
                self.name,
            )
        step.reporter = self
        return self.observed(lambda: step.transfer(attempt, source, ROWS))


class ReleaseSource(_BackupTask):
    """Delete the temporary snapshot the strategy read, if it took one."""

    def __init__(self, backend: Backend, store: Store, request: BackupRequest, prefix: str) -> None:
        super().__init__(
            "release-source",
            backend,
            store,
            request,
            prefix,
            requires={"source": "source", "lease": "lease"},
        )

    def execute(self, source: dict[str, str | None], lease: dict[str, str]) -> None:
        ref = source_ref(source)
        if isinstance(ref, SnapshotRef):
            driver = self.backend.use(ISnapshot)
            driver.delete_snapshot(ref)
            entry = {
                "backend": self.backend.name,
                "volume_id": ref.volume_id,
                "snapshot_id": ref.snapshot_id,
            }
            forget_temporary(self.store.objects, lease["token"], entry)
            failpoint("backup.snapshot-deleted")


def plan_stats(plan: Plan, strategy: str) -> dict[str, str]:
    """What a manifest records of the plan (shown by ``pieceworks show``).

    ``reason``: why `strategy` could run; ``enhancers``: its enhancers,
    comma-separated; ``plan``: every strategy considered as compact JSON
    ``[[name, eligible, reason], ...]``.
    """
    chosen = next((s for s in plan.strategies if s.name == strategy), None)
    out = {
        "plan": json.dumps(
            [[s.name, s.eligible, s.reason] for s in plan.strategies], separators=(",", ":")
        )
    }
    if chosen is not None:
        out["reason"] = chosen.reason
        out["enhancers"] = ",".join(chosen.enhancers)
    return out


class WriteManifest(_BackupTask):
    """Write the backup's manifest: the moment the backup comes to exist."""

    def __init__(
        self,
        backend: Backend,
        store: Store,
        request: BackupRequest,
        prefix: str,
        plan: Plan | None = None,
    ) -> None:
        super().__init__(
            "write-manifest",
            backend,
            store,
            request,
            prefix,
            provides="result",
            requires={"attempt": "attempt", "transfer": "transfer", "lease": "lease"},
        )
        self.plan = plan

    def execute(
        self, attempt: dict[str, Any], transfer: dict[str, Any], lease: dict[str, str]
    ) -> dict[str, Any]:
        # the columns form; a result persisted by an earlier version holds rows
        chunks = chunk_list_from_json(transfer["chunks"])
        failed = list(attempt.get("failed", []))
        stats: dict[str, int | str] = {
            k: int(transfer[k])
            for k in ("bytes_read", "bytes_stored", "bytes_through_manager")
            if transfer.get(k) is not None
        }
        if failed:
            stats["fallbacks"] = "; ".join(f"{f['strategy']}: {f['error']}" for f in failed)
            stats["failed_strategies"] = json.dumps(failed, separators=(",", ":"))
        if self.request.in_use and self.request.force:
            stats["forced"] = "read while in use"
        if self.plan is not None:
            stats.update(plan_stats(self.plan, str(attempt["strategy"])))
        guard = transfer.get("guard")
        stats.update(guard_stats(guard))
        notes = [str(n) for n in transfer.get("notes") or ()]
        if notes:
            stats["warnings"] = json.dumps(notes, separators=(",", ":"))
        manifest = Manifest(
            backup_id=self.request.backup_id,
            volume_id=self.request.volume_id,
            backend=self.backend.name,
            size=int(transfer["size"]),
            chunk_size=self.request.chunk_size,
            codec=str(transfer.get("codec") or self.request.codec),
            chunks=chunks,
            created=time.time(),
            strategy=str(attempt["strategy"]),
            parent=transfer.get("parent"),
            change_token=transfer.get("change_token"),
            incremental=self.request.incremental,
            stats=stats,
            labels=self.request.labels,
            enhancers_used=dict(transfer.get("enhancers_used") or {}),
        )
        failpoint("backup.before-manifest")
        with lease_renewed(self.store.objects, self.request.backup_id, lease["token"]) as resumed:
            if resumed:  # another process stored the chunks, and its lease was dead meanwhile
                _require_stored(self.store.objects, self.request.backup_id, chunks)
            require_still_plain(self.store.name, self.store.objects, before_data=False)
            write_manifest(self.store.objects, manifest)
        failpoint("backup.manifest-written")
        return {
            "backup_id": manifest.backup_id,
            "volume_id": manifest.volume_id,
            "backend": manifest.backend,
            "store": self.store.name,
            "strategy": manifest.strategy,
            "failed_strategies": failed,
            "size": manifest.size,
            "bytes_read": int(transfer.get("bytes_read", 0)),
            "bytes_stored": int(transfer.get("bytes_stored", 0)),
            "bytes_through_manager": int(transfer.get("bytes_through_manager", 0)),
            "chunks_total": len(chunks),
            "chunks_new": int(transfer.get("chunks_new", 0)),
            "holes": int(transfer.get("holes", 0)),
            "transfer_seconds": float(transfer.get("seconds", 0.0)),
            "incremental": manifest.incremental,
            "parent_id": manifest.parent,
            "parent": manifest.parent,  # the deprecated old name (jobs show's result)
            "enhancers_used": dict(manifest.enhancers_used),
            "guard": guard,
            "notes": notes,
        }


def _require_stored(objects: IObjectStore, backup_id: str, chunks: Sequence[ChunkRef]) -> None:
    """`ChunksCollected` unless every chunk of `chunks` is stored with its recorded size.

    For a manifest written by a run resumed in another process (see
    `pieceworks.common_algorithms.gc.leases.reclaim_lease`): while the
    process that stored the chunks was dead, a garbage collection may have
    deleted them. Batched size queries (`unstored_chunks`).
    """
    missing = [chunk_key(digest) for digest, _, _, _ in unstored_chunks(objects, [chunks])]
    if missing:
        raise ChunksCollected(
            f"backup {backup_id!r} was resumed after the run storing its chunks died, and"
            f" {len(missing)} of its {len(set(c.digest for c in chunks))} chunks are no longer"
            f" stored as recorded (first: {missing[0]}): a garbage collection removed them"
            " meanwhile. No manifest was written"
        )


class ReleaseLease(_BackupTask):
    """Give back the store lease once the manifest protects the chunks."""

    def __init__(self, backend: Backend, store: Store, request: BackupRequest, prefix: str) -> None:
        super().__init__(
            "release-lease", backend, store, request, prefix, requires={"lease": "lease"}
        )

    def execute(self, lease: dict[str, str]) -> None:
        release_lease(self.store.objects, self.request.backup_id, lease["token"])
        failpoint("backup.lease-released")
