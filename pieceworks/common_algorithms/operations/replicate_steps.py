"""The replication's steps around the copy: check the target, name the source, release it.

Each is a `ReplicaTask`: a TaskFlow task named ``replicate-<operation
id>.<step>`` that holds the source and target backends, the store (None:
none) and the request, and journals the temporary snapshot it takes.
"""

from __future__ import annotations

from typing import Any

from taskflow import task
from taskflow.types.failure import Failure

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.encryption_lock import (
    StoreEncryptedMeanwhile,
    require_still_plain,
)
from pieceworks.common_algorithms.gc.journal import LocalJournal
from pieceworks.common_algorithms.gc.leases import forget_temporary, record_temporary
from pieceworks.common_algorithms.operations.requests import ReplicateRequest
from pieceworks.common_algorithms.operations.reverts import guarded
from pieceworks.common_algorithms.operations.targets import check_target
from pieceworks.failpoints import failpoint
from pieceworks.protocols import ISnapshot, SnapshotRef, VolumeRef

__all__ = [
    "CheckReplicaTarget",
    "PrepareReplicaSource",
    "ReleaseReplicaSource",
    "ReplicaTask",
    "replica_prefix",
]


def replica_prefix(request: ReplicateRequest) -> str:
    """The prefix of a replication's atom names: ``replicate-<operation id>``."""
    return f"replicate-{request.operation_id}"


class ReplicaTask(task.Task):
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
        p = replica_prefix(request)
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


class CheckReplicaTarget(ReplicaTask):
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


class PrepareReplicaSource(ReplicaTask):
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


class ReleaseReplicaSource(ReplicaTask):
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
