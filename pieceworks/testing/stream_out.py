"""Conformance checks of stream-out (`IStreamOut`), and their mixin `StreamOutTests`."""

from __future__ import annotations

from contextlib import closing

from pieceworks.protocols import (
    ISnapshot,
    IStreamOut,
    NotFound,
    SnapshotNotFound,
    SnapshotRef,
    VolumeNotFound,
    VolumeRef,
)
from pieceworks.testing._util import expect_error, mixed, same
from pieceworks.testing.scratch import VOLUME_BYTES, CheckFailed, Scratch, check

__all__ = [
    "StreamOutTests",
    "reads_are_full_except_at_the_end",
    "reads_a_snapshot",
    "open_read_of_unknown_sources_raises_not_found",
]

#: Bytes asked of the reader at a time: does not divide the volume size.
_PIECE = 48 << 10


@check("stream-out")
def reads_are_full_except_at_the_end(s: Scratch) -> None:
    """A reader reports the volume's size and fills every buffer except at the end,
    where it returns what is left, then 0; the bytes are the volume's."""
    driver = s.use(IStreamOut)
    volume = s.volume(mixed(s.size(VOLUME_BYTES + 777), seed=1))
    want = s.expected(volume)
    size = len(want)
    got = bytearray()
    with closing(driver.open_read(volume)) as reader:
        if reader.size != size:
            raise CheckFailed(f"stream-out: reader.size is {reader.size}, the volume {size}")
        buffer = bytearray(_PIECE)
        position = 0
        while position < size:
            n = reader.readinto_at(position, memoryview(buffer))
            expected_n = min(_PIECE, size - position)
            if n != expected_n:
                raise CheckFailed(
                    f"stream-out: readinto_at({position}, {_PIECE} bytes) returned {n},"
                    f" not {expected_n}: a short read before the end of the volume"
                )
            got += buffer[:n]
            position += n
        at_end = reader.readinto_at(size, memoryview(buffer))
        if at_end != 0:
            raise CheckFailed(f"stream-out: a read at the end ({size}) returned {at_end}, not 0")
    same(bytes(got), want, f"stream-out of {volume}")


@check("stream-out")
def reads_a_snapshot(s: Scratch) -> None:
    """A snapshot reads back as the volume was when it was taken."""
    s.need(IStreamOut, ISnapshot)
    volume = s.volume(mixed(s.size(VOLUME_BYTES), seed=2))
    snapshot = s.snapshot(volume)
    same(s.read(snapshot), s.expected(snapshot), f"stream-out of {snapshot}")


@check("stream-out")
def open_read_of_unknown_sources_raises_not_found(s: Scratch) -> None:
    """An unknown volume raises VolumeNotFound; an unknown snapshot SnapshotNotFound
    (of a known volume) or a NotFound (of an unknown one)."""
    driver = s.use(IStreamOut)
    missing = VolumeRef(s.new_id("missing"))
    expect_error(VolumeNotFound, lambda: driver.open_read(missing), f"open_read({missing})")
    if not s.provides(ISnapshot):
        return
    volume = s.volume(mixed(s.size(4096), seed=3))
    ghost = SnapshotRef(volume.volume_id, "pwt-no-such-snapshot")
    expect_error(SnapshotNotFound, lambda: driver.open_read(ghost), f"open_read({ghost})")
    orphan = SnapshotRef(missing.volume_id, "pwt-no-such-snapshot")
    expect_error(NotFound, lambda: driver.open_read(orphan), f"open_read({orphan})")


class StreamOutTests:
    """The stream-out checks; each skips itself when the driver lacks stream-out."""

    def test_reads_are_full_except_at_the_end(self, pieceworks_scratch: Scratch) -> None:
        reads_are_full_except_at_the_end(pieceworks_scratch)

    def test_reads_a_snapshot(self, pieceworks_scratch: Scratch) -> None:
        reads_a_snapshot(pieceworks_scratch)

    def test_open_read_of_unknown_sources_raises_not_found(
        self, pieceworks_scratch: Scratch
    ) -> None:
        open_read_of_unknown_sources_raises_not_found(pieceworks_scratch)
