"""Capability ``snapshot``: point-in-time copies of a volume.

Implement `ISnapshot` (two methods) to let pieceworks back up a volume while
it stays in use: the snapshot-stream strategy streams a temporary snapshot
and always deletes it, and offload pushes from a snapshot. Subclass
`Snapshot` to also get `temporary_snapshot` for free.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from zope.interface import Interface, implementer, taggedValue

from pieceworks.protocols._contract import restates
from pieceworks.protocols.values import SnapshotRef, VolumeRef

__all__ = ["ISnapshot", "Snapshot"]


class ISnapshot(Interface):
    """The backend can take a crash-consistent snapshot of a live volume."""

    taggedValue("capability", "snapshot")

    def create_snapshot(volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        """Take a snapshot of `volume` named `snapshot_id` and return it.

        The caller guarantees `snapshot_id` is a valid, unused id (see
        `validate_id`). The snapshot must not change when the volume does,
        and must stay readable by the driver's other capabilities
        (stream-out, push-to-object-store) until it is deleted. Raise
        `VolumeNotFound` for an unknown volume and `BackendError` for any
        other failure; leave nothing behind when you raise.
        """

    def delete_snapshot(snapshot: SnapshotRef) -> None:
        """Delete `snapshot`. Deleting one that does not exist is not an error.

        Called on success, failure and revert alike, possibly more than once
        for the same snapshot, so it must be idempotent.
        """


@restates
@implementer(ISnapshot)
class Snapshot(abc.ABC):
    """Base class for `ISnapshot`: implement the two abstract methods.

    Free: `temporary_snapshot`, a context manager that always deletes.
    """

    @abc.abstractmethod
    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef: ...

    @abc.abstractmethod
    def delete_snapshot(self, snapshot: SnapshotRef) -> None: ...

    @contextmanager
    def temporary_snapshot(
        self, volume: VolumeRef, prefix: str = "pieceworks-tmp"
    ) -> Iterator[SnapshotRef]:
        """Yield a fresh snapshot of `volume` that is deleted however the block exits."""
        snapshot = self.create_snapshot(volume, f"{prefix}-{secrets.token_hex(6)}")
        try:
            yield snapshot
        finally:
            self.delete_snapshot(snapshot)
