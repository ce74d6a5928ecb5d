"""Real change-tracking drivers for tests: the file driver plus changed-blocks, two ways.

`TrackingFileDriver` is the one the conformance suite runs
(tests/drivers/test_conformance.py). It keeps a change journal per volume
next to the volumes, like a block device's dirty bitmap with generations:

    <root>/.changes/<volume-id>.json             {"epoch", "generation", "log"}
    <root>/.changes/<volume-id>@<snapshot>.json  {"epoch", "generation"} at the snapshot

`write_in_place` (the volume's users' path) writes into the volume file and
appends ``[generation, first block, last block]`` to the log. A token is
``epoch:generation``; `changed_extents` returns the blocks logged between the
token's generation and the source's, in `BLOCK`-byte units. A stream-in
replaces the volume and starts a new epoch with an empty log, so every older
token raises `ChangeTrackingLost`.

`JournalFileDriver` is simpler: every change bumps the volume's generation
and records the ranges it changed in a journal beside the volumes
(``<root>/.journal/<volume-id>``, one JSON line per generation):
`write_in_place` the range it wrote, a stream-in commit (which replaces the
volume) the whole volume. Its tokens (``gen-<n>``) mean something only to
the backend that issued them, like a block device's change-tracking
counter: the case where the common algorithms must not hand a token to
another backend. (Its tokens are the volume's, also when taken on a
snapshot, which the conformance suite would refuse: it is not run there.)
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import (
    ChangedBlocks,
    ChangeTrackingLost,
    Extent,
    SnapshotNotFound,
    SnapshotRef,
    Source,
    VolumeRef,
    VolumeWriter,
)

#: The unit of change tracking, in bytes.
BLOCK = 4096


class TrackingFileDriver(FileDriver, ChangedBlocks):
    """The file driver plus changed-blocks, from a journal of in-place writes."""

    # -- the users' write path --

    def write_in_place(self, volume_id: str, offset: int, data: bytes) -> None:
        """Write `data` at `offset` of the volume file and log the blocks it touched."""
        fd, size = self._open_source(VolumeRef(volume_id))
        os.close(fd)
        if offset < 0 or offset + len(data) > size:
            raise ValueError(
                f"write of {len(data)} bytes at {offset} outside the {size}-byte volume"
            )
        with self._journal(volume_id) as journal:
            fd = os.open(self._path(volume_id), os.O_WRONLY)
            try:
                os.pwrite(fd, data, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
            if data:
                journal["generation"] += 1
                first, last = offset // BLOCK, (offset + len(data) - 1) // BLOCK
                journal["log"].append([journal["generation"], first, last])

    # -- changed-blocks --

    def change_token(self, source: Source) -> str:
        epoch, generation = self._state(source)
        return f"{epoch}:{generation}"

    def changed_extents(self, source: Source, since: str) -> Sequence[Extent]:
        epoch, _, text = since.partition(":")
        if not text.isdigit():
            raise ChangeTrackingLost(f"not a change token of this driver: {since!r}")
        source_epoch, generation = self._state(source)
        with self._journal(source.volume_id) as journal:
            current, log = journal["epoch"], list(journal["log"])
        if not epoch == source_epoch == current:
            raise ChangeTrackingLost(f"{source}: the volume was replaced since token {since!r}")
        low, high = sorted((int(text), generation))
        blocks = sorted(
            {b for g, first, last in log if low < g <= high for b in range(first, last + 1)}
        )
        fd, size = self._open_source(source)
        os.close(fd)
        return _extents(blocks, size)

    # -- what resets or records tracking --

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        with self._journal(volume.volume_id) as journal:
            snapshot = super().create_snapshot(volume, snapshot_id)
            state = {"epoch": journal["epoch"], "generation": journal["generation"]}
            _write_json(self._meta(volume.volume_id, snapshot_id), state)
        return snapshot

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        super().delete_snapshot(snapshot)
        _unlink(self._meta(snapshot.volume_id, snapshot.snapshot_id))

    def open_write(self, target: VolumeRef, size: int) -> VolumeWriter:
        return _ResettingWriter(super().open_write(target, size), self, target.volume_id)

    def delete_volume(self, volume_id: str) -> None:
        super().delete_volume(volume_id)
        _unlink(self._meta(volume_id))
        _unlink(self._meta(volume_id) + ".lock")

    def reset_tracking(self, volume_id: str) -> None:
        """Start a new epoch: the volume was replaced as a whole."""
        with self._journal(volume_id) as journal:
            journal.update(epoch=uuid.uuid4().hex, generation=0, log=[])

    # -- internals --

    def _meta(self, volume_id: str, snapshot_id: str | None = None) -> str:
        name = volume_id if snapshot_id is None else f"{volume_id}@{snapshot_id}"
        return self._path(".changes", f"{name}.json", create=True)

    def _state(self, source: Source) -> tuple[str, int]:
        fd, _ = self._open_source(source)  # VolumeNotFound / SnapshotNotFound
        os.close(fd)
        if isinstance(source, SnapshotRef):
            try:
                with open(self._meta(source.volume_id, source.snapshot_id)) as f:
                    state = json.load(f)
            except FileNotFoundError:
                raise SnapshotNotFound(f"no change record for {source}") from None
        else:
            with self._journal(source.volume_id) as state:
                pass
        return str(state["epoch"]), int(state["generation"])

    @contextmanager
    def _journal(self, volume_id: str) -> Iterator[dict[str, Any]]:
        """The volume's journal, locked, written back when the block ends."""
        path = self._meta(volume_id)
        lock = os.open(path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(path) as f:
                    journal: dict[str, Any] = json.load(f)
            except FileNotFoundError:
                journal = {"epoch": uuid.uuid4().hex, "generation": 0, "log": []}
            yield journal
            _write_json(path, journal)
        finally:
            os.close(lock)


class _ResettingWriter:
    """A stream-in writer that resets change tracking when it commits."""

    def __init__(self, inner: VolumeWriter, driver: TrackingFileDriver, volume_id: str) -> None:
        self.inner, self.driver, self.volume_id = inner, driver, volume_id

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        self.inner.write_at(offset, data)

    def commit(self) -> None:
        self.inner.commit()
        self.driver.reset_tracking(self.volume_id)

    def abort(self) -> None:
        self.inner.abort()


def _extents(blocks: list[int], size: int) -> list[Extent]:
    """Sorted block numbers as merged extents, clipped to `size`."""
    out: list[Extent] = []
    for block in blocks:
        start, end = block * BLOCK, min((block + 1) * BLOCK, size)
        if end <= start:
            continue
        if out and out[-1].end == start:
            out[-1] = Extent(out[-1].offset, end - out[-1].offset)
        else:
            out.append(Extent(start, end - start))
    return out


def _write_json(path: str, value: object) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


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
