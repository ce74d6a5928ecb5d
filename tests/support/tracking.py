"""A real change-tracking driver whose tokens are plain generation numbers.

`JournalFileDriver` is the file driver plus changed-blocks: every change
bumps the volume's generation and records the ranges it changed in a journal
beside the volumes (``<root>/.journal/<volume-id>``, one JSON line per
generation): `write_in_place` the range it wrote, a stream-in commit (which
replaces the volume) the whole volume. Its tokens (``gen-<n>``) mean something only to the
backend that issued them, like a block device's change-tracking counter:
the case where the common algorithms must not hand a token to another
backend.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import (
    ChangedBlocks,
    ChangeTrackingLost,
    Extent,
    Source,
    VolumeRef,
    VolumeWriter,
)


class JournalFileDriver(FileDriver, ChangedBlocks):
    """File volumes whose writes are journalled by generation (see the module doc)."""

    def _journal(self, volume_id: str) -> str:
        directory = os.path.join(self.root, ".journal")
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, volume_id)

    def _entries(self, volume_id: str) -> list[list[list[int]]]:
        try:
            with open(self._journal(volume_id)) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def journal(self, volume_id: str, ranges: list[list[int]]) -> None:
        """Record one generation that changed `ranges` (``[offset, length]`` pairs)."""
        with open(self._journal(volume_id), "a") as f:
            f.write(json.dumps(ranges) + "\n")

    def write_in_place(self, volume_id: str, offset: int, data: bytes) -> None:
        """Overwrite part of a volume in place (as its user would) and journal it."""
        with open(os.path.join(self.root, volume_id), "r+b") as f:
            f.seek(offset)
            f.write(data)
        self.journal(volume_id, [[offset, len(data)]])

    def open_write(self, target: VolumeRef, size: int) -> VolumeWriter:
        return _JournalWriter(super().open_write(target, size), self, target.volume_id)

    def change_token(self, source: Source) -> str:
        return f"gen-{len(self._entries(source.volume_id))}"

    def changed_extents(self, source: Source, since: str) -> Sequence[Extent]:
        entries = self._entries(source.volume_id)
        generation = int(since.removeprefix("gen-"))
        if generation > len(entries):
            raise ChangeTrackingLost(f"no generation {generation} of {source.volume_id}")
        ranges = sorted(Extent(o, n) for entry in entries[generation:] for o, n in entry)
        merged: list[Extent] = []
        for e in ranges:
            if merged and merged[-1].end >= e.offset:
                last = merged.pop()
                merged.append(Extent(last.offset, max(last.end, e.end) - last.offset))
            else:
                merged.append(e)
        return merged


class _JournalWriter:
    """Writes through to the file driver's writer, journalling the ranges on commit."""

    def __init__(self, inner: VolumeWriter, driver: JournalFileDriver, volume_id: str) -> None:
        self._inner, self._driver, self._volume_id = inner, driver, volume_id

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        self._inner.write_at(offset, data)

    def commit(self) -> None:
        self._inner.commit()
        self._driver.journal(self._volume_id, [[0, 1 << 62]])  # replaced: all of it changed

    def abort(self) -> None:
        self._inner.abort()
