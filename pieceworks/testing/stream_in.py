"""Conformance checks of stream-in (`IStreamIn`), and their mixin `StreamInTests`."""

from __future__ import annotations

from pieceworks.protocols import IStreamIn, IStreamOut, VolumeNotFound, VolumeRef
from pieceworks.testing._util import expect_error, filled, mixed, same
from pieceworks.testing.scratch import VOLUME_BYTES, NotApplicable, Scratch, check

__all__ = [
    "StreamInTests",
    "abort_leaves_the_old_content",
    "commit_gives_exactly_the_bytes_written",
    "shorter_and_longer_overwrites",
]


def _need_read(s: Scratch) -> None:
    s.need(IStreamIn)
    if not s.can_read():
        raise NotApplicable("not applicable: the suite cannot read this driver's volumes")


@check("stream-in")
def commit_gives_exactly_the_bytes_written(s: Scratch) -> None:
    """A new volume written at a few offsets holds exactly those bytes after commit,
    zeros elsewhere, and has the given size."""
    _need_read(s)
    size = s.size(VOLUME_BYTES + 333)
    volume_id = s.new_id()
    writes = [(0, filled(100, 8)), (size // 3, filled(5000, 9)), (size - 17, filled(17, 10))]
    s.stream_in(volume_id, size, writes)
    same(s.read(VolumeRef(volume_id)), s.expected(VolumeRef(volume_id)), "a committed stream-in")


@check("stream-in")
def abort_leaves_the_old_content(s: Scratch) -> None:
    """abort keeps an existing volume's content, and creates no new volume."""
    _need_read(s)
    driver = s.use(IStreamIn)
    size = s.size(VOLUME_BYTES)
    volume = s.volume(mixed(size, seed=11))
    writer = driver.open_write(volume, size * 2)
    writer.write_at(0, filled(size, 12))
    writer.abort()
    same(s.read(volume), s.expected(volume), f"{volume} after an aborted stream-in")
    fresh = VolumeRef(s.new_id())
    writer = driver.open_write(fresh, size)
    writer.write_at(0, filled(100, 13))
    writer.abort()
    if s.provides(IStreamOut):
        reader = s.use(IStreamOut)
        expect_error(
            VolumeNotFound, lambda: reader.open_read(fresh), "a volume whose stream-in was aborted"
        )


@check("stream-in")
def shorter_and_longer_overwrites(s: Scratch) -> None:
    """Overwriting a volume with a shorter, then a longer stream gives exactly the new
    bytes at the new size: nothing of the old content shows through."""
    _need_read(s)
    size = s.size(VOLUME_BYTES)
    volume = s.volume(filled(size, seed=14))
    short = s.size(size // 2)
    s.stream_in(volume.volume_id, short, [(10, filled(1000, 15))])
    same(s.read(volume), s.expected(volume), "a shorter overwrite")
    long = s.size(size * 2)
    s.stream_in(volume.volume_id, long, [(long - 2000, filled(2000, 16))])
    same(s.read(volume), s.expected(volume), "a longer overwrite")


class StreamInTests:
    """The stream-in checks; each skips itself when the driver lacks stream-in."""

    def test_commit_gives_exactly_the_bytes_written(self, pieceworks_scratch: Scratch) -> None:
        commit_gives_exactly_the_bytes_written(pieceworks_scratch)

    def test_abort_leaves_the_old_content(self, pieceworks_scratch: Scratch) -> None:
        abort_leaves_the_old_content(pieceworks_scratch)

    def test_shorter_and_longer_overwrites(self, pieceworks_scratch: Scratch) -> None:
        shorter_and_longer_overwrites(pieceworks_scratch)
