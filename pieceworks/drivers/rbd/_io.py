"""The reader and writer objects the rbd driver hands out (stream-out, stream-in).

The reader reads an image or one of its snapshots with ``Image.read``; the
writer fills a new hidden image and moves it into place on commit, writing
only the non-zero parts of what it is given (`ZERO_GRAIN` granules), so a
restored image stays thin: zeros cost neither a write nor space.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from pieceworks.drivers.rbd._cluster import errors
from pieceworks.drivers.rbd._images import remove_image, replace_image
from pieceworks.protocols import BackendError
from pieceworks.protocols.chunks import is_zero

if TYPE_CHECKING:
    import rados
    import rbd

__all__ = ["ZERO_GRAIN", "RbdReader", "RbdWriter", "write_nonzero"]

#: Granule (bytes) in which written data is checked for zeros; zero granules are skipped.
ZERO_GRAIN: Final = 64 << 10
#: Largest single librbd read or write (bytes).
MAX_IO: Final = 16 << 20

log = logging.getLogger(__name__)


class RbdReader:
    """A `VolumeReader` over an open image (or snapshot); closes it on `close`."""

    __slots__ = ("_image", "_label", "_size")

    def __init__(self, image: rbd.Image, size: int, label: str) -> None:
        self._image: rbd.Image | None = image
        self._size = size
        self._label = label

    @property
    def size(self) -> int:
        return self._size

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        if self._image is None:
            raise ValueError("reader is closed")
        wanted = max(0, min(len(buffer), self._size - offset))
        done = 0
        with errors(f"read of {self._label} failed at offset {offset}"):
            while done < wanted:
                data = self._image.read(offset + done, min(wanted - done, MAX_IO))
                if not data:
                    break
                buffer[done : done + len(data)] = data
                done += len(data)
        return done

    def close(self) -> None:
        image, self._image = self._image, None
        if image is not None:
            image.close()


def write_nonzero(
    image: rbd.Image, offset: int, data: bytes | memoryview, *, zero_fill: bool = False
) -> int:
    """Write the non-zero `ZERO_GRAIN` granules of `data` at `offset`; return bytes written.

    Granules are aligned to the volume (offset multiples of `ZERO_GRAIN`), and
    runs of non-zero granules go out as one write. Zero granules are skipped
    (the image reads as zeros there already), or with `zero_fill` zeroed with
    ``write_zeroes`` (thin: no data is sent or stored).
    """
    view = memoryview(data).cast("B")
    total, written, start = view.nbytes, 0, None
    pos = 0
    while pos < total:
        step = min(ZERO_GRAIN - (offset + pos) % ZERO_GRAIN, total - pos)
        zero = is_zero(view[pos : pos + step])
        if zero and start is not None:
            written += _write(image, offset + start, view[start:pos])
            start = None
        elif not zero and start is None:
            start = pos
        if zero and zero_fill:
            image.write_zeroes(offset + pos, step)
        elif start is not None and pos - start >= MAX_IO:
            written += _write(image, offset + start, view[start:pos])
            start = pos
        pos += step
    if start is not None:
        written += _write(image, offset + start, view[start:total])
    return written


def _write(image: rbd.Image, offset: int, view: memoryview) -> int:
    image.write(bytes(view), offset)
    return view.nbytes


class RbdWriter:
    """A `VolumeWriter`: fills hidden image `temp`, which `commit` makes volume `final`.

    Until `commit` the volume (if any) is untouched; `abort` (or a failed
    commit) removes the hidden image.
    """

    __slots__ = ("_image", "_ioctx", "_size", "_temp", "final")

    def __init__(
        self, ioctx: rados.Ioctx, image: rbd.Image, temp: str, final: str, size: int
    ) -> None:
        self._image: rbd.Image | None = image
        self._ioctx, self._temp = ioctx, temp
        self.final, self._size = final, size

    @property
    def image(self) -> rbd.Image:
        """The hidden image being filled (`ValueError` once committed or aborted)."""
        if self._image is None:
            raise ValueError("writer already committed or aborted")
        return self._image

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        image = self.image
        length = memoryview(data).nbytes
        if offset < 0 or offset + length > self._size:
            raise ValueError(f"write of {length} bytes at {offset} beyond size {self._size}")
        with errors(f"write to volume {self.final!r} failed at offset {offset}"):
            write_nonzero(image, offset, data)

    def commit(self) -> None:
        image = self.image
        try:
            with errors(f"cannot commit volume {self.final!r}"):
                image.flush()
                image.close()
                self._image = None
                replace_image(self._ioctx, self._temp, self.final)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        image, self._image = self._image, None
        try:
            if image is not None:
                image.close()
        finally:
            try:
                remove_image(self._ioctx, self._temp)
            except BackendError as exc:  # keep the first error; the image stays hidden
                log.warning("cannot remove the unfinished image %r: %s", self._temp, exc)
