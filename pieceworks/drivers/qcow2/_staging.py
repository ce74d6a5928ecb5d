"""Stream-in of the qcow2 driver: a sparse raw staging file, converted to qcow2 on commit.

See the package docstring for the design (free space needed, durability).
"""

from __future__ import annotations

import os

from pieceworks.drivers import _files
from pieceworks.drivers.qcow2._qemu import Qemu
from pieceworks.protocols import BackendError
from pieceworks.protocols.os_errors import os_error_text

__all__ = ["StagingWriter"]

_CONVERT = ("convert", "-q", "-W", "-t", "unsafe", "-f", "raw", "-O", "qcow2")
_CONVERT_MIN_RATE = 20_000_000  # bytes/s: a stream-in commit slower than this has hung


class StagingWriter:
    """A `VolumeWriter`: fill a sparse raw file, convert it to qcow2 and rename on commit.

    Until `commit` the old volume is untouched; `abort` (or a failed commit)
    removes both temporary files.
    """

    __slots__ = ("_fd", "_final", "_qcow2", "_qemu", "_raw", "_replace", "_size")

    def __init__(self, qemu: Qemu, fd: int, base: str, final: str, size: int) -> None:
        self._qemu, self._fd, self._final, self._size = qemu, fd, final, size
        self._replace = os.path.lexists(final)  # else a new volume: never clobber one
        self._raw, self._qcow2 = base + ".raw", base + ".qcow2"

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        if self._fd < 0:
            raise ValueError("writer already committed or aborted")
        _files.write_all_at(self._fd, offset, data, self._size)

    def commit(self) -> None:
        if self._fd < 0:
            raise ValueError("writer already committed or aborted")
        fd, self._fd = self._fd, -1
        os.close(fd)
        what = f"cannot commit {os.path.basename(self._final)!r}"
        try:
            # -t unsafe: qemu-img skips its own flushes; the fsync below makes it durable.
            self._qemu.img(
                [*_CONVERT, self._raw, self._qcow2],
                what,
                timeout=self._qemu.timeout + self._size / _CONVERT_MIN_RATE,
            )
            _files.fsync_file(self._qcow2)
            _files.commit_volume(self._qcow2, self._final, self._replace)
            _files.fsync_dir(os.path.dirname(self._final))
        except OSError as exc:
            raise BackendError(f"{what}: {os_error_text(exc)}") from exc
        finally:
            self.abort()

    def abort(self) -> None:
        fd, self._fd = self._fd, -1
        _files.discard(fd, self._raw, self._qcow2)
