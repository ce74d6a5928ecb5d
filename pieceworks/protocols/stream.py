"""Capabilities ``stream-out`` and ``stream-in``: bytes through the manager.

`IStreamOut` lets the common algorithms read a volume (or snapshot) and
back it up chunk by chunk; `IStreamIn` lets them restore or replicate into
a volume. Each is one method returning a small handle object (see
`pieceworks.protocols.io`).
"""

from __future__ import annotations

import abc
from contextlib import closing

from zope.interface import Interface, implementer, taggedValue

from pieceworks.protocols._contract import restates
from pieceworks.protocols.io import VolumeReader, VolumeWriter
from pieceworks.protocols.values import Source, VolumeRef

__all__ = ["IStreamIn", "IStreamOut", "StreamIn", "StreamOut"]


class IStreamOut(Interface):
    """The backend can hand out a volume's or snapshot's bytes."""

    taggedValue("capability", "stream-out")

    def open_read(source: Source) -> VolumeReader:
        """Open `source` for reading and return a `VolumeReader`.

        `source` is a `VolumeRef` or a `SnapshotRef` of this backend. Raise
        `VolumeNotFound` / `SnapshotNotFound` if it does not exist. Reading a
        live volume that is being written gives no consistency guarantee;
        the common algorithms read a snapshot whenever the volume is in use
        and the backend provides snapshot.
        """


class IStreamIn(Interface):
    """The backend can create or overwrite a volume from a stream of bytes."""

    taggedValue("capability", "stream-in")

    def open_write(target: VolumeRef, size: int) -> VolumeWriter:
        """Open `target` for writing `size` bytes and return a `VolumeWriter`.

        The volume is created if it does not exist. Until `commit`, the
        volume's previous content (if any) must stay intact; after `commit`
        it holds exactly the bytes written, zeros elsewhere, and is `size`
        bytes long. `abort` leaves things as they were before the call (a
        volume that did not exist still does not).

        Change tracking (a backend that also provides changed-blocks): a
        commit replaces the whole volume, so every change token taken before
        it must afterwards either raise `ChangeTrackingLost` from
        `changed_extents` or report every byte the stream-in wrote or
        changed. Resetting the tracking at commit (a new epoch) is the
        simple way; reporting nothing, or only writes made since, hands an
        incremental backup stale chunks. ``pieceworks.testing`` checks this.
        """


@restates
@implementer(IStreamOut)
class StreamOut(abc.ABC):
    """Base class for `IStreamOut`: implement `open_read`.

    Free: `read_range`, a convenience for small reads (tests, probes).
    """

    @abc.abstractmethod
    def open_read(self, source: Source) -> VolumeReader: ...

    def read_range(self, source: Source, offset: int, length: int) -> bytes:
        """Return up to `length` bytes of `source` from `offset`."""
        buffer = bytearray(length)
        with closing(self.open_read(source)) as reader:
            n = reader.readinto_at(offset, memoryview(buffer))
        return bytes(buffer[:n])


@restates
@implementer(IStreamIn)
class StreamIn(abc.ABC):
    """Base class for `IStreamIn`: implement `open_write`.

    Free: `write_volume`, which writes a whole byte string and commits.
    """

    @abc.abstractmethod
    def open_write(self, target: VolumeRef, size: int) -> VolumeWriter: ...

    def write_volume(self, target: VolumeRef, data: bytes) -> None:
        """Replace `target` with exactly `data`, aborting on any failure."""
        writer = self.open_write(target, len(data))
        try:
            writer.write_at(0, data)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
