"""Drivers that break one contract each, quietly: the conformance suite must catch them.

Each is a real driver with one lie, the kind that made backups which
verify OK and restore wrong: extents that omit data, changed blocks that
omit a write, a "snapshot" that follows the volume, a stream-in that keeps
the old change tracking.
"""

from __future__ import annotations

from collections.abc import Sequence

from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import Extent, SnapshotRef, Source, VolumeReader, VolumeRef, VolumeWriter
from tests.support.tracking import TrackingFileDriver


class OmitsLastExtent(TrackingFileDriver):
    """allocated-extents leaves out the last data extent."""

    def allocated_extents(self, source: Source) -> Sequence[Extent]:
        return list(super().allocated_extents(source))[:-1]


class OmitsLastChangedBlock(TrackingFileDriver):
    """changed-blocks leaves out the last changed extent."""

    def changed_extents(self, source: Source, since: str) -> Sequence[Extent]:
        return list(super().changed_extents(source, since))[:-1]


class MutableSnapshot(TrackingFileDriver):
    """A "snapshot" is a name for the live volume: it changes when the volume does."""

    def open_read(self, source: Source) -> VolumeReader:
        if isinstance(source, SnapshotRef):
            super().open_read(source).close()  # SnapshotNotFound as usual
            return super().open_read(source.volume)
        return super().open_read(source)

    def allocated_extents(self, source: Source) -> Sequence[Extent]:
        if isinstance(source, SnapshotRef):
            super().allocated_extents(source)  # SnapshotNotFound as usual
            return super().allocated_extents(source.volume)
        return super().allocated_extents(source)


class StreamInKeepsTracking(TrackingFileDriver):
    """A stream-in replaces the volume but leaves the change journal as it was."""

    def open_write(self, target: VolumeRef, size: int) -> VolumeWriter:
        return FileDriver.open_write(self, target, size)
