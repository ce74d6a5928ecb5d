"""The delete template: remove a backup's manifest, then collect its chunks.

The manifest goes first, so the backup stops existing at once; chunks no
other manifest references are then garbage-collected under the store's GC
lock, which never races a backup in progress (see `gc`): if one holds a
lease (a backup being written, or a reader such as a restore), collection
is deferred and the report says which leases blocked it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskflow import task
from taskflow.patterns import linear_flow

from pieceworks.common_algorithms.backend import Store
from pieceworks.common_algorithms.gc.collection import delete_backup
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.common_algorithms.runner import EngineOptions, run_flow
from pieceworks.protocols import validate_id

__all__ = ["DeleteOutcome", "delete", "delete_flow"]


class DeleteBackup(task.Task):
    """Remove one backup and collect the chunks only it used."""

    def __init__(self, store: Store, backup_id: str) -> None:
        super().__init__(name=f"delete-{backup_id}", provides=f"delete-{backup_id}.result")
        self.store, self.backup_id = store, backup_id

    def execute(self) -> dict[str, Any]:
        report = delete_backup(self.store.objects, self.backup_id)
        gc = report.gc
        return {
            "backup_id": self.backup_id,
            "store": self.store.name,
            "chunks_deleted": gc.chunks_deleted if gc else 0,
            "bytes_freed": gc.bytes_freed if gc else 0,
            "deferred": gc.deferred if gc else False,
            "deferred_by": list(gc.deferred_by) if gc else [],
            "blockers": gc.describe_blockers() if gc else "",
            "blocking_leases": [m.to_dict() for m in gc.blockers] if gc else [],
        }


def delete_flow(store: Store, backup_id: str) -> linear_flow.Flow:
    """The flow deleting `backup_id`; provides ``delete-<id>.result``."""
    validate_id("backup id", backup_id)
    return linear_flow.Flow(f"delete-{backup_id}.flow").add(DeleteBackup(store, backup_id))


@dataclass(frozen=True)
class DeleteOutcome:
    """What a delete removed; whether live leases postponed GC, and which.

    `deferred_by` names the backups being written among them;
    `blocking_leases` every lease, readers' (a restore of this very backup,
    say) included.
    """

    backup_id: str
    store: str
    chunks_deleted: int
    bytes_freed: int
    deferred_by: tuple[str, ...]
    blockers: str = ""
    #: The leases that deferred the collection (`Marker.to_dict` rows, as ``prune`` gives them).
    blocking_leases: tuple[dict[str, Any], ...] = ()

    @property
    def deferred(self) -> bool:
        """Whether the collection was deferred (by a backup being written or by a reader)."""
        return bool(self.deferred_by or self.blocking_leases)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``pieceworks delete`` with one id.

        ``deferred``, ``deferring_backup_ids`` and ``blocking_leases`` are
        named and shaped as in ``prune``; ``deferred_by`` (the same ids) and ``blockers`` (a
        line of text) are deprecated (`pieceworks.common_algorithms.json_fields`).
        """
        return with_deprecated(
            "delete",
            {
                "backup_id": self.backup_id,
                "store": self.store,
                "chunks_deleted": self.chunks_deleted,
                "bytes_freed": self.bytes_freed,
                "deferred": self.deferred,
                "deferring_backup_ids": list(self.deferred_by),
                "blocking_leases": [dict(m) for m in self.blocking_leases],
                "blockers": self.blockers,
            },
        )


def delete(store: Store, backup_id: str, *, options: EngineOptions | None = None) -> DeleteOutcome:
    """Delete `backup_id`; `BackupNotFound` if the store has no such backup."""
    result = run_flow(
        delete_flow(store, backup_id),
        operation="delete",
        backend="-",
        prefix=f"delete-{backup_id}",
        options=options,
    )
    return DeleteOutcome(
        backup_id=result["backup_id"],
        store=result["store"],
        chunks_deleted=result["chunks_deleted"],
        bytes_freed=result["bytes_freed"],
        deferred_by=tuple(result["deferred_by"]),
        blockers=str(result.get("blockers", "")),
        blocking_leases=tuple(result.get("blocking_leases", ())),
    )
