"""Enhancers ``allocated-extents`` and ``changed-blocks``: read less.

Neither changes whether a backup can be made, only how much is read:
allocated-extents lets a backup skip holes, changed-blocks lets an
incremental read only what changed since a previous backup.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from zope.interface import Interface, implementer, taggedValue

from pieceworks.protocols._contract import restates
from pieceworks.protocols.values import Extent, Source

__all__ = ["AllocatedExtents", "ChangedBlocks", "IAllocatedExtents", "IChangedBlocks"]


class IAllocatedExtents(Interface):
    """The backend knows which byte ranges of a volume may hold data."""

    taggedValue("capability", "allocated-extents")

    def allocated_extents(source: Source) -> Sequence[Extent]:
        """Return the ranges of `source` that may hold non-zero data.

        Sorted by offset, non-overlapping, within the source's size. Every
        byte outside them must read as zero. Reporting too much is safe
        (it is read and found to be zeros); reporting too little loses data.
        """


class IChangedBlocks(Interface):
    """The backend tracks which ranges changed since a point in time.

    The contract, which ``pieceworks.testing`` checks with random writes:

    * a token stands for the content of the source it was taken on. The
      common algorithms take it on the snapshot they back up, so a token
      taken on a snapshot describes that snapshot, not the live volume at
      the moment it is asked (writes made after the snapshot, even before
      the token, are changes since it);
    * ``changed_extents(source, token)`` covers every byte written since
      the token's content and `source`'s; the backup reads whole chunks
      (``chunk_size``, 4 MiB by default) around each reported range, so
      ranges may be coarse (blocks, objects) but never short;
    * when the backend cannot answer (tracking turned off or restarted, the
      volume replaced by stream-in, a token from before, another backend or
      never given), raise `ChangeTrackingLost`: the backup then reads
      everything and stays correct. Never guess.
    """

    taggedValue("capability", "changed-blocks")

    def change_token(source: Source) -> str:
        """Return an opaque token for the current content of `source` (volume or snapshot).

        Stored with a backup; passed back later to `changed_extents`. Raise
        `VolumeNotFound` / `SnapshotNotFound` for an unknown source.
        """

    def changed_extents(source: Source, since: str) -> Sequence[Extent]:
        """Return the ranges of `source` that changed since token `since`.

        Sorted, non-overlapping, within the source's size, covering every
        byte written since `since`. Reporting too much is safe; too little
        loses data. Raise `ChangeTrackingLost` if the backend can no longer
        answer for `since` (a token it does not know, or from before a
        stream-in replaced the volume); the caller then reads everything.
        """


@restates
@implementer(IAllocatedExtents)
class AllocatedExtents(abc.ABC):
    """Base class for `IAllocatedExtents`: implement `allocated_extents`.

    Free: `allocated_bytes`, the total length of the allocated ranges.
    """

    @abc.abstractmethod
    def allocated_extents(self, source: Source) -> Sequence[Extent]: ...

    def allocated_bytes(self, source: Source) -> int:
        """How many bytes of `source` may hold data."""
        return sum(e.length for e in self.allocated_extents(source))


@restates
@implementer(IChangedBlocks)
class ChangedBlocks(abc.ABC):
    """Base class for `IChangedBlocks`: implement both methods."""

    @abc.abstractmethod
    def change_token(self, source: Source) -> str: ...

    @abc.abstractmethod
    def changed_extents(self, source: Source, since: str) -> Sequence[Extent]: ...
