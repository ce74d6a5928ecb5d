"""Driver classes for ``pieceworks check-driver`` tests (imported by module path)."""

from __future__ import annotations

from zope.interface import implementer

from pieceworks.protocols import ISnapshot, Snapshot, SnapshotRef, VolumeRef

__all__ = ["HalfSnapshot", "SnapshotOnly"]


@implementer(ISnapshot)
class HalfSnapshot:  # type: ignore[misc]  # deliberately incomplete; mypy-zope catches it too
    """Claims snapshot but cannot delete one: refused by verify_driver."""

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        return SnapshotRef(volume.volume_id, snapshot_id)


class SnapshotOnly(Snapshot):
    """A complete snapshot capability and nothing else: completes no strategy."""

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        return SnapshotRef(volume.volume_id, snapshot_id)

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        return None
