"""The reader and writer objects that stream-out and stream-in hand back.

They are structural (`typing.Protocol`): a driver returns any object with
these members; it need not inherit from anything.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["VolumeReader", "VolumeWriter", "takes_concurrent_writes"]


class VolumeReader(Protocol):
    """Random-access read handle on a volume or snapshot.

    The caller guarantees: `readinto_at` is called with ascending,
    non-overlapping offsets (a reader backed by a pipe may therefore skip
    forward by reading and discarding), from one thread at a time, and
    `close` is called exactly once, on success and on failure alike.
    """

    @property
    def size(self) -> int:
        """The size of the source in bytes."""
        ...

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        """Fill `buffer` with the bytes at `offset`; return how many were read.

        Return fewer than ``len(buffer)`` only at the end of the source.
        Raise `BackendError` (or a subclass) if the backend fails.
        """
        ...

    def close(self) -> None:
        """Release the handle. Idempotent."""
        ...


class VolumeWriter(Protocol):
    """Write handle on a volume being filled by stream-in.

    The volume reads as zeros wherever nothing is written, so a restore
    writes only the data it holds and skips holes. The caller guarantees:
    one thread at a time, and exactly one of `commit` or `abort` at the end.

    Optional: a writer whose class sets ``concurrent_writes = True`` takes
    `write_at` calls from several threads at once, at disjoint ranges and in
    any order (a file written with ``pwrite``), still with `commit` or
    `abort` once, after every write has returned. A restore then writes on
    its worker threads, so that copying into the page cache is not done by
    one thread for all of them (`takes_concurrent_writes`).
    """

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        """Write `data` at byte `offset` of the volume."""
        ...

    def commit(self) -> None:
        """Make everything written durable and visible as the volume."""
        ...

    def abort(self) -> None:
        """Discard the write: leave no partial volume behind. Idempotent."""
        ...


def takes_concurrent_writes(writer: VolumeWriter) -> bool:
    """Whether `writer` declares ``concurrent_writes = True`` (see `VolumeWriter`)."""
    return getattr(writer, "concurrent_writes", False) is True
