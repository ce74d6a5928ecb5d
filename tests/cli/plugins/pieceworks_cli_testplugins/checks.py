"""Driver classes for ``pieceworks check-driver`` tests (imported by module path)."""

from __future__ import annotations

from collections.abc import Sequence

from zope.interface import implementer

from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import (
    ChangedBlocks,
    Extent,
    ISnapshot,
    Snapshot,
    SnapshotRef,
    Source,
    StreamIn,
    StreamOut,
    VolumeReader,
    VolumeRef,
    VolumeWriter,
)

__all__ = [
    "AbstractSnapshot",
    "AsyncReader",
    "BadChangeToken",
    "HalfSnapshot",
    "OmitsLastExtent",
    "Picky",
    "SnapshotOnly",
    "WrongAnnotation",
]


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


class AsyncReader(FileDriver):
    """The file driver with an ``async def open_read``: verification refuses stream-out."""

    async def open_read(self, source: Source) -> VolumeReader:  # type: ignore[override]
        return super().open_read(source)


class WrongAnnotation(FileDriver):
    """The file driver whose allocated_extents claims to take an int."""

    def allocated_extents(self, source: int) -> Sequence[Extent]:  # type: ignore[override]
        return super().allocated_extents(VolumeRef(str(source)))


class AbstractSnapshot(Snapshot, StreamOut, StreamIn):
    """Subclasses Snapshot without its methods: the class cannot be instantiated."""

    def open_read(self, source: Source) -> VolumeReader:
        raise NotImplementedError

    def open_write(self, target: VolumeRef, size: int) -> VolumeWriter:
        raise NotImplementedError


class OmitsLastExtent(FileDriver):
    """Type-correct, but its allocated extents leave out the last one: only a run shows it."""

    def allocated_extents(self, source: Source) -> Sequence[Extent]:
        return list(super().allocated_extents(source))[:-1]


class Picky(FileDriver):
    """Takes its directory as ``root``, not ``path`` (a constructor/configuration mismatch)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)


class BadChangeToken(FileDriver, ChangedBlocks):
    """change_token takes an int: the problem is reported under its own name."""

    def change_token(self, source: int) -> str:  # type: ignore[override]
        return str(source)

    def changed_extents(self, source: Source, since: str) -> Sequence[Extent]:
        return []
