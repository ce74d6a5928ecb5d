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
The transfer itself is `backup_transfer.ChunkTransfer`, WriteManifest lives
in `backup_manifest`, the steps' common base in `backup_step`; their names
are importable from here. `BackupTransfer` stays in this module: a worker
serves a step by its class's full name, which must not change.

TakeLease provides the run token (``backup-<id>.lease``); every later step
uses it, so that each cleanup removes only what this run created: the lease
(its content names the token), the temporary snapshot (its name ends with
the token) and the run journal ``runs/<token>``.
"""

from __future__ import annotations

import logging
from typing import Any

from taskflow import task

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.encryption_lock import require_still_plain
from pieceworks.common_algorithms.gc.leases import (
    acquire_lease,
    forget_temporary,
    lease_renewed,
    record_temporary,
    release_lease,
)
from pieceworks.common_algorithms.operations.backup_manifest import WriteManifest, plan_stats
from pieceworks.common_algorithms.operations.backup_step import BackupTask, source_ref
from pieceworks.common_algorithms.operations.backup_transfer import COLUMNS, ROWS, ChunkTransfer
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
from pieceworks.failpoints import failpoint
from pieceworks.protocols import ISnapshot, SnapshotRef, VolumeRef
from pieceworks.protocols.values import chunks_from_json, chunks_to_json

__all__ = [
    "COLUMNS",
    "ROWS",
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
    "source_ref",
    "temporary_snapshot_id",
]

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


class TakeLease(BackupTask):
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


class PrepareSource(BackupTask):
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


class TransferChunks(DataStep, BackupTask):
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
            "chunk_form": COLUMNS,
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
        """The transfer result of `ChunkTransfer.transfer` (its docstring says its forms)."""
        transfer = ChunkTransfer(self.backend, self.store, self.request, self.reporter or self)
        return transfer.transfer(attempt, source, chunk_form)


class BackupTransfer(RemoteStep):
    """`TransferChunks`'s work on a worker: built from its name, given names and values.

    `backend` and `store` are names opened from this host's configuration
    (`placement.host`); `request` holds `BackupRequest`'s fields; `attempt`
    and `source` are the results of the fallback retry and `PrepareSource`.
    `chunk_form` is how the result's chunks are given: ``"columns"``
    (`ChunkList.to_json`, about 50 bytes of JSON a chunk) when the
    conductor asks for it, as conductors since the columns form do; else,
    or for a form this version does not know, ``"rows"`` (`chunks_to_json`,
    about 110 bytes a chunk and some 300 bytes a chunk once parsed), the
    only form older conductors read: workers are upgraded first
    (docs/scale.md, rolling upgrades). An older worker that does not know
    the argument answers in rows, which every conductor reads
    (`OPTIONAL_ARGUMENTS`).
    """

    OPTIONAL_ARGUMENTS = frozenset({"chunk_form"})

    def work(  # type: ignore[override]
        self,
        backend: str,
        store: str,
        request: dict[str, Any],
        attempt: dict[str, Any],
        source: dict[str, str | None],
        chunk_form: str = ROWS,
    ) -> dict[str, Any]:
        if chunk_form not in (ROWS, COLUMNS):
            log.warning(
                "step %s: unknown chunk_form %r (a newer conductor's): answering in %r",
                self.name,
                chunk_form,
                ROWS,
            )
            chunk_form = ROWS
        sections = host()
        with declining():
            step = TransferChunks(
                sections.backend(backend),
                sections.store(store),
                decode_request(BackupRequest, request),
                self.name,
            )
        step.reporter = self
        return self.observed(lambda: step.transfer(attempt, source, chunk_form))


class ReleaseSource(BackupTask):
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


class ReleaseLease(BackupTask):
    """Give back the store lease once the manifest protects the chunks."""

    def __init__(self, backend: Backend, store: Store, request: BackupRequest, prefix: str) -> None:
        super().__init__(
            "release-lease", backend, store, request, prefix, requires={"lease": "lease"}
        )

    def execute(self, lease: dict[str, str]) -> None:
        release_lease(self.store.objects, self.request.backup_id, lease["token"])
        failpoint("backup.lease-released")
