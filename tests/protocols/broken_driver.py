"""A deliberately broken driver: mypy (with mypy-zope) must reject it.

Excluded from the project's own mypy and ruff runs; `test_static_check.py`
runs mypy on it alone and expects exactly the errors marked below.
"""

from __future__ import annotations

from zope.interface import implementer

from pieceworks.protocols import ISnapshot, SnapshotRef, StreamOut, VolumeReader, VolumeRef
from pieceworks.protocols.values import Source


@implementer(ISnapshot)
class MissingMethodDriver:  # error: missing delete_snapshot
    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        return SnapshotRef(volume.volume_id, snapshot_id)


class WrongSignatureDriver(StreamOut):
    def open_read(self, source: int) -> VolumeReader:  # error: wrong argument type
        raise NotImplementedError


def use(source: Source) -> None:
    MissingMethodDriver()
    WrongSignatureDriver().open_read(source)
