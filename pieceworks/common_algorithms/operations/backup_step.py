"""What every backup step shares: its atom names, and the source a run reads.

A backup step is a TaskFlow task named ``<prefix>.<step>`` (``backup-<id>``:
resume matches atoms by name) that holds the backend, the store and the
request it works for; `source_ref` turns a ``PrepareSource`` result back
into the `VolumeRef` or `SnapshotRef` it names.
"""

from __future__ import annotations

from taskflow import task

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.operations.requests import BackupRequest
from pieceworks.protocols import SnapshotRef, Source, VolumeRef

__all__ = ["BackupTask", "source_ref"]


def source_ref(source: dict[str, str | None]) -> Source:
    """The `VolumeRef` or `SnapshotRef` a PrepareSource result names."""
    volume_id, snapshot_id = str(source["volume_id"]), source.get("snapshot_id")
    return SnapshotRef(volume_id, snapshot_id) if snapshot_id else VolumeRef(volume_id)


class BackupTask(task.Task):
    """A backup step: its atom name, provides and requires under the run's prefix."""

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
