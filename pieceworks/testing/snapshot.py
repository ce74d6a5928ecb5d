"""Conformance checks of snapshot (`ISnapshot`), and their mixin `SnapshotTests`."""

from __future__ import annotations

from pieceworks.protocols import (
    ISnapshot,
    IStreamOut,
    SnapshotNotFound,
    SnapshotRef,
    VolumeNotFound,
    VolumeRef,
)
from pieceworks.testing._util import expect_error, filled, mixed, same
from pieceworks.testing.scratch import VOLUME_BYTES, NotApplicable, Scratch, check

__all__ = [
    "SnapshotTests",
    "deleting_is_idempotent",
    "snapshot_keeps_its_content_when_the_volume_is_written",
    "unknown_volume_raises_volume_not_found",
]


@check("snapshot", writes=True)
def snapshot_keeps_its_content_when_the_volume_is_written(s: Scratch) -> None:
    """Writes to the volume after a snapshot (start, middle, end) leave the snapshot
    as it was, and show in the volume."""
    s.need(ISnapshot)
    if not s.can_read():
        raise NotApplicable("not applicable: the suite cannot read this driver's volumes")
    size = s.size(VOLUME_BYTES)
    volume = s.volume(mixed(size, seed=6))
    snapshot = s.snapshot(volume)
    for i, offset in enumerate((0, size // 2 + 13, size - 999)):
        s.write(volume, offset, filled(999, seed=60 + i))
    same(s.read(snapshot), s.expected(snapshot), f"{snapshot} after writes to the volume")
    same(s.read(volume), s.expected(volume), f"{volume} after writes (through the harness)")


@check("snapshot")
def deleting_is_idempotent(s: Scratch) -> None:
    """Deleting a snapshot twice, or one that never existed, is not an error; a
    deleted snapshot is gone (stream-out raises SnapshotNotFound)."""
    driver = s.use(ISnapshot)
    volume = s.volume(filled(s.size(4096), seed=7))
    snapshot = s.snapshot(volume)
    driver.delete_snapshot(snapshot)
    driver.delete_snapshot(snapshot)
    driver.delete_snapshot(SnapshotRef(volume.volume_id, "pwt-never-taken"))
    if s.provides(IStreamOut):
        reader = s.use(IStreamOut)
        expect_error(
            SnapshotNotFound, lambda: reader.open_read(snapshot), f"open_read of deleted {snapshot}"
        )


@check("snapshot")
def unknown_volume_raises_volume_not_found(s: Scratch) -> None:
    """A snapshot of an unknown volume raises VolumeNotFound and leaves nothing behind."""
    driver = s.use(ISnapshot)
    missing = VolumeRef(s.new_id("missing"))
    expect_error(
        VolumeNotFound,
        lambda: driver.create_snapshot(missing, "pwt-s-orphan"),
        f"create_snapshot({missing})",
    )


class SnapshotTests:
    """The snapshot checks; each skips itself when the driver lacks snapshot."""

    def test_snapshot_keeps_its_content_when_the_volume_is_written(
        self, pieceworks_scratch: Scratch
    ) -> None:
        snapshot_keeps_its_content_when_the_volume_is_written(pieceworks_scratch)

    def test_deleting_is_idempotent(self, pieceworks_scratch: Scratch) -> None:
        deleting_is_idempotent(pieceworks_scratch)

    def test_unknown_volume_raises_volume_not_found(self, pieceworks_scratch: Scratch) -> None:
        unknown_volume_raises_volume_not_found(pieceworks_scratch)
