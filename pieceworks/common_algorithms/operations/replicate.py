"""The replicate template: copy a volume or snapshot to another backend.

    outcome = replicate(source, target, ReplicateRequest("vol-1", in_use=True), store=store)

Strategies, best first: ``native`` (the source copies to its peer itself:
replicate-to-peer), ``stream`` (source stream-out into target stream-in
through the manager, sparse-aware, hashed end to end) and ``via-store``
(the source pushes chunks to a store, the target pulls them: for two
wire-length backends no byte crosses the manager). The source is read from
a temporary snapshot when it is in use (or from the snapshot asked for). A
failing strategy is reverted (temporary snapshot deleted, partial target
removed) and the next one runs, as for backup. An existing target volume is
replaced only when the request says `overwrite`: otherwise the replication
is refused before anything runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from taskflow import task
from taskflow.patterns import linear_flow
from taskflow.types.failure import Failure

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.encryption_lock import (
    StoreEncryptedMeanwhile,
    require_still_plain,
)
from pieceworks.common_algorithms.format.chunk_pipeline import backup_chunks, restore_chunks
from pieceworks.common_algorithms.format.chunk_ranges import coalesce
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.common_algorithms.format.stream_copy import check_copy, copy_stream
from pieceworks.common_algorithms.gc.journal import LocalJournal
from pieceworks.common_algorithms.gc.leases import (
    acquire_lease,
    forget_temporary,
    lease_renewed,
    record_temporary,
    release_lease,
)
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.common_algorithms.operations.backup_tasks import source_ref
from pieceworks.common_algorithms.operations.fallback import StrategyFallback
from pieceworks.common_algorithms.operations.plan import Attempt, Plan
from pieceworks.common_algorithms.operations.planning import plan_replicate, via_store_sides
from pieceworks.common_algorithms.operations.requests import (
    ReplicateRequest,
    decode_request,
    request_fields,
)
from pieceworks.common_algorithms.operations.reverts import guarded
from pieceworks.common_algorithms.operations.targets import check_target
from pieceworks.common_algorithms.placement import (
    DataStep,
    RemoteStep,
    declining,
    host,
    run_data_step,
)
from pieceworks.common_algorithms.progress import ProgressReporter
from pieceworks.common_algorithms.runner import EngineOptions, ProgressCallback, run_flow
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    ChunkRef,
    IAllocatedExtents,
    IReplicateToPeer,
    ISnapshot,
    IStreamIn,
    IStreamOut,
    SnapshotRef,
    Source,
    VolumeRef,
)
from pieceworks.protocols.chunks import DEFAULT_CODEC

__all__ = [
    "BackendOpener",
    "CopyVolumeByName",
    "ReplicaCopy",
    "ReplicateOutcome",
    "StoreOpener",
    "replicate",
    "replicate_flow",
    "replicate_request",
]


class _ReplicaTask(task.Task):
    """A step of a replication; names are prefixed with the operation id."""

    STEP: str
    PROVIDES: str
    REQUIRES: tuple[str, ...]

    def __init__(
        self,
        source: Backend,
        target: Backend,
        store: Store | None,
        request: ReplicateRequest,
        journal: LocalJournal | None = None,
    ) -> None:
        p = _prefix(request)
        super().__init__(
            name=f"{p}.{self.STEP}",
            provides=f"{p}.{self.PROVIDES}",
            rebind={k: f"{p}.{k}" for k in self.REQUIRES},
        )
        self.source, self.target, self.store, self.request = source, target, store, request
        self.local_journal = journal

    def temporary_snapshot(self, attempt: dict[str, Any]) -> SnapshotRef | None:
        """The snapshot this attempt takes, if it takes one."""
        req = self.request
        if req.snapshot_id or not req.in_use or not self.source.provides(ISnapshot):
            return None
        return SnapshotRef(req.volume_id, f"pw-{req.operation_id}-{attempt['strategy']}")

    def journal(self, snapshot: SnapshotRef, *, taken: bool) -> None:
        """Record a temporary snapshot in the run journal (before it is taken),
        or drop it (after it is deleted), so that `recover` can clean up after a crash.

        The journal is the store's ``runs/<operation_id>``; without a store,
        ``<operation_id>.json`` in the local journal (`LocalJournal`: the one
        given, else ``$PIECEWORKS_HOME/journal``).
        """
        entry = {
            "backend": self.source.name,
            "volume_id": snapshot.volume_id,
            "snapshot_id": snapshot.snapshot_id,
        }
        op = self.request.operation_id
        if self.store is None:
            local = self.local_journal or LocalJournal.default()
            if taken:
                local.record(op, f"replicate-{op}", entry)
            else:
                local.forget(op, entry)
        elif taken:
            record_temporary(self.store.objects, op, f"replicate-{op}", entry)
        else:
            forget_temporary(self.store.objects, op, entry)

    def require_plain_store(self, journaled: SnapshotRef) -> None:
        """Once `journaled` is in the store's journal: stop if a ``key init`` encrypts it.

        The journal entry, plain, is the replication's first object in the
        store (`encryption_lock`: written, then looked after); on
        `StoreEncryptedMeanwhile` it is removed again, and no snapshot taken.
        """
        if self.store is None:
            return
        try:
            require_still_plain(self.store.name, self.store.objects, writer="replication")
        except StoreEncryptedMeanwhile:
            self.journal(journaled, taken=False)
            raise


class CheckReplicaTarget(_ReplicaTask):
    """Before any strategy runs: refuse to replace an existing target unless asked to.

    Provides the size of the volume that will be replaced (None: none).
    """

    STEP, PROVIDES, REQUIRES = "check-target", "target", ()

    def execute(self) -> dict[str, Any]:
        replaced = check_target(
            self.target,
            self.request.target_volume,
            overwrite=self.request.overwrite,
            operation="replicate",
        )
        return {"replaced_size": replaced}


class PrepareReplicaSource(_ReplicaTask):
    """Name what is read: the snapshot asked for, a temporary snapshot, or the volume."""

    STEP, PROVIDES, REQUIRES = "prepare-source", "source", ("attempt",)

    def execute(self, attempt: dict[str, Any]) -> dict[str, str | None]:
        req = self.request
        temporary = self.temporary_snapshot(attempt)
        if temporary is not None:
            self.journal(temporary, taken=True)
            self.require_plain_store(temporary)
            snap = self.source.use(ISnapshot).create_snapshot(
                VolumeRef(req.volume_id), temporary.snapshot_id
            )
            failpoint("replicate.snapshot-created")
            return {"volume_id": req.volume_id, "snapshot_id": snap.snapshot_id}
        return {"volume_id": req.volume_id, "snapshot_id": req.snapshot_id}

    def revert(self, attempt: dict[str, Any], result: Any = None, **kwargs: Any) -> None:
        temporary = self.temporary_snapshot(attempt)
        if temporary is None:
            return
        if isinstance(result, Failure) and result.check(StoreEncryptedMeanwhile):
            return  # stopped before the snapshot, its journal entry removed

        def undo() -> None:
            self.source.use(ISnapshot).delete_snapshot(temporary)
            self.journal(temporary, taken=False)

        guarded(self, f"delete the temporary snapshot {temporary.snapshot_id}", undo)


class CopyVolume(DataStep, _ReplicaTask):
    """Copy the source into the target volume by the current strategy.

    The work (`copy_data`) runs on a worker that serves the source backend when
    the conductor has a dispatcher and a worker takes it (as `ReplicaCopy`;
    a worker that lacks the target or the store declines it), else in process.
    """

    STEP, PROVIDES, REQUIRES = "copy-volume", "copied", ("attempt", "source")
    #: The task whose notifier gets the progress events (a worker's `ReplicaCopy`).
    reporter: task.Task | None = None

    def execute(self, attempt: dict[str, Any], source: dict[str, str | None]) -> dict[str, Any]:
        arguments = {
            "source_backend": self.source.name,
            "target_backend": self.target.name,
            "store_name": None if self.store is None else self.store.name,
            "request": request_fields(self.request),
            "attempt": attempt,
            "source": source,
        }
        return run_data_step(
            self, ReplicaCopy, self.source.name, arguments, lambda: self.copy_data(attempt, source)
        )

    def copy_data(self, attempt: dict[str, Any], source: dict[str, str | None]) -> dict[str, Any]:
        """Copy by ``attempt["strategy"]``; the copy's result row."""
        started = time.monotonic()
        ref = source_ref(source)
        target = VolumeRef(self.request.target_volume)
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
                    progress=ProgressReporter(self.reporter or self, reader.size),
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
                progress=ProgressReporter(self.reporter or self, reader.size),
            )
            size = reader.size
        return size, result.chunks, result.stats.bytes_read, result.stats.bytes_read

    def _unstage(
        self, target: VolumeRef, size: int, chunks: Sequence[ChunkRef], side: str | None
    ) -> int:
        assert self.store is not None
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


#: What a replication stopped by a late key file (`require_still_plain`) left.
_STAGED_ONLY = (
    "it stopped with its chunks staged, and the target volume was not written from them"
    " (they are unreferenced: `pieceworks prune` removes them)"
)

#: Turn a backend name into that backend, a store name into that store, on the host
#: where a task runs (its own configuration); `ConfigError` for a name it lacks.
BackendOpener = Callable[[str], Backend]
StoreOpener = Callable[[str], Store]


class CopyVolumeByName(CopyVolume):
    """`CopyVolume` that holds no live object: names and plain values reach it through
    `execute()`, as TaskFlow's worker-based engine requires.

    Its arguments besides ``attempt`` and ``source`` (the earlier steps'
    results) are injected: ``source_backend``, ``target_backend`` and
    ``store_name`` (names, ``store_name`` None without a store) and
    ``request`` (`ReplicateRequest`'s fields as JSON gives them). At
    execution, `open_backend` and `open_store` turn the names into objects
    from the configuration of the host it runs on; no option or secret is
    part of the task, its arguments or the persisted flow. Same name,
    provides and result as `CopyVolume`.
    """

    def __init__(
        self,
        request: ReplicateRequest,
        *,
        source: str,
        target: str,
        store: str | None,
        open_backend: BackendOpener,
        open_store: StoreOpener,
    ) -> None:
        p = _prefix(request)
        task.Task.__init__(
            self,
            name=f"{p}.{self.STEP}",
            provides=f"{p}.{self.PROVIDES}",
            rebind={k: f"{p}.{k}" for k in self.REQUIRES},
            inject={
                "source_backend": source,
                "target_backend": target,
                "store_name": store,
                "request": request_fields(request),
            },
        )
        self._open_backend, self._open_store = open_backend, open_store
        self.request = request
        self.local_journal = None  # the copy step journals nothing

    def execute(  # type: ignore[override]
        self,
        attempt: dict[str, Any],
        source: dict[str, str | None],
        source_backend: str,
        target_backend: str,
        store_name: str | None,
        request: Mapping[str, Any],
    ) -> dict[str, Any]:
        self.source = self._open_backend(source_backend)
        self.target = self._open_backend(target_backend)
        self.store = None if store_name is None else self._open_store(store_name)
        self.request = replicate_request(request)
        return super().execute(attempt, source)


class ReplicaCopy(RemoteStep):
    """`CopyVolume`'s work on a worker: built from its name, given names and values.

    The backends and the store are names opened from this host's
    configuration (`placement.host`); a host that lacks one declines the
    step (`NotServedHere`: the conductor runs it elsewhere). `request` holds
    `ReplicateRequest`'s fields; `attempt` and `source` are the earlier
    steps' results.
    """

    def work(  # type: ignore[override]
        self,
        source_backend: str,
        target_backend: str,
        store_name: str | None,
        request: dict[str, Any],
        attempt: dict[str, Any],
        source: dict[str, str | None],
    ) -> dict[str, Any]:
        sections = host()
        with declining():
            step = CopyVolume(
                sections.backend(source_backend),
                sections.backend(target_backend),
                None if store_name is None else sections.store(store_name),
                replicate_request(request),
            )
        step.reporter = self
        return self.observed(lambda: step.copy_data(attempt, source))


def replicate_request(fields: Mapping[str, Any], *, strict: bool = False) -> ReplicateRequest:
    """`ReplicateRequest` from its fields as JSON gives them (``strategies`` a list).

    `decode_request`: a field this version does not know is ignored (logged),
    or with `strict` (posting) a `ConfigError`; `ConfigError` for a bad value,
    `IncompatibleRequest` for a request this version cannot honour.
    """
    return decode_request(ReplicateRequest, fields, strict=strict)


class ReleaseReplicaSource(_ReplicaTask):
    """Delete the temporary snapshot, if this attempt took one."""

    STEP, PROVIDES, REQUIRES = "release-source", "result", ("attempt", "copied", "target")

    def execute(
        self, attempt: dict[str, Any], copied: dict[str, Any], target: dict[str, Any]
    ) -> dict[str, Any]:
        temporary = self.temporary_snapshot(attempt)
        if temporary is not None:
            self.source.use(ISnapshot).delete_snapshot(temporary)
            self.journal(temporary, taken=False)
            failpoint("replicate.snapshot-deleted")
        req = self.request
        return {
            "operation_id": req.operation_id,
            "source_backend": self.source.name,
            "target_backend": self.target.name,
            "volume_id": req.volume_id,
            "snapshot_id": req.snapshot_id,
            "target_volume_id": req.target_volume,
            "strategy": attempt["strategy"],
            "failed_strategies": list(attempt.get("failed", [])),
            "forced": bool(req.in_use and req.force and not self.source.provides(ISnapshot)),
            "replaced_size": target.get("replaced_size"),
            **copied,
        }


def _prefix(request: ReplicateRequest) -> str:
    return f"replicate-{request.operation_id}"


def replicate_flow(
    source: Backend,
    target: Backend,
    request: ReplicateRequest,
    *,
    store: Store | None = None,
    plan: Plan | None = None,
    copy_step: CopyVolume | None = None,
    journal: LocalJournal | None = None,
) -> linear_flow.Flow:
    """The flow for `request`; provides ``replicate-<operation id>.result``.

    `copy_step` replaces the copy task (`CopyVolumeByName` for a job).
    Without a store, temporary snapshots are journaled in `journal`
    (default: `LocalJournal.default`).
    """
    plan = (plan or plan_replicate(source, target, store, request)).require_eligible()
    p = _prefix(request)
    args = (source, target, store, request, journal)
    return linear_flow.Flow(p).add(
        CheckReplicaTarget(*args),
        linear_flow.Flow(
            f"{p}.strategies",
            retry=StrategyFallback(plan.eligible, name=f"{p}.fallback", provides=f"{p}.attempt"),
        ).add(
            PrepareReplicaSource(*args),
            copy_step or CopyVolume(*args),
            ReleaseReplicaSource(*args),
        ),
    )


@dataclass(frozen=True)
class ReplicateOutcome:
    """What a replication did: strategy, failures before it, bytes, verification.

    `bytes_sent` is what the source backend reports it sent to its peer
    itself (native: e.g. only the changes since the last common snapshot);
    ``None`` for the strategies through the manager or a store.
    """

    operation_id: str
    source_backend: str
    target_backend: str
    volume_id: str
    snapshot_id: str | None
    target_volume_id: str
    strategy: str
    failed: tuple[Attempt, ...]
    plan: Plan
    size: int
    bytes_through_manager: int
    verified: str
    seconds: float
    replaced_size: int | None = None
    bytes_sent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``pieceworks replicate``.

        ``verification`` says how the copy was checked (or that it was not
        read back); ``verified`` is its deprecated old name
        (`pieceworks.common_algorithms.json_fields`).
        """
        doc = {
            "operation_id": self.operation_id,
            "source_backend": self.source_backend,
            "target_backend": self.target_backend,
            "volume_id": self.volume_id,
            "snapshot_id": self.snapshot_id,
            "target_volume_id": self.target_volume_id,
            "strategy": self.strategy,
            "failed_strategies": [a.to_dict() for a in self.failed],
            "size": self.size,
            "replaced_size": self.replaced_size,
            "bytes_through_manager": self.bytes_through_manager,
            "bytes_sent": self.bytes_sent,
            "verification": self.verified,
            "seconds": round(self.seconds, 3),
            "plan": self.plan.to_dict(),
        }
        return with_deprecated("replicate", doc)


def replicate(
    source: Backend,
    target: Backend,
    request: ReplicateRequest,
    *,
    store: Store | None = None,
    options: EngineOptions | None = None,
    progress: ProgressCallback | None = None,
    journal: LocalJournal | None = None,
) -> ReplicateOutcome:
    """Replicate `request.volume_id` (or its snapshot) from `source` to `target`.

    `store` is needed only for the via-store strategy; the run journal of a
    temporary snapshot goes to the store, or without one to `journal`
    (default: `LocalJournal.default`), where ``pieceworks recover`` finds
    it after a crash. Raise `VolumeExists`
    (before anything runs) if the target volume exists and
    `request.overwrite` is false, `NoEligibleStrategy`,
    `AllStrategiesFailed` (each cause listed), or the error itself for an
    unknown volume or snapshot.
    """
    started = time.monotonic()
    plan = plan_replicate(source, target, store, request)
    p = _prefix(request)
    result = run_flow(
        replicate_flow(source, target, request, store=store, plan=plan, journal=journal),
        operation="replicate",
        backend=f"{source.name}->{target.name}",
        prefix=p,
        options=options,
        progress=progress,
    )
    return ReplicateOutcome(
        operation_id=result["operation_id"],
        source_backend=result["source_backend"],
        target_backend=result["target_backend"],
        volume_id=result["volume_id"],
        snapshot_id=result["snapshot_id"],
        target_volume_id=result["target_volume_id"],
        strategy=result["strategy"],
        failed=Attempt.from_rows(result["failed_strategies"]),
        plan=plan,
        size=result["size"],
        bytes_through_manager=result["bytes_through_manager"],
        verified=result["verified"],
        seconds=time.monotonic() - started,
        replaced_size=result.get("replaced_size"),
        bytes_sent=result.get("bytes_sent"),
    )
