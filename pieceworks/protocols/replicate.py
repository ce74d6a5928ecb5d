"""Capability ``replicate-to-peer``: a backend copies a volume to a peer itself.

The best replication strategy: two backends of a kind that can talk to each
other (two remote targets, two file backends on one filesystem) copy the
volume directly, and no byte crosses the manager. This capability is new and
small: it extends nothing and adds nothing to the published ones.
"""

from __future__ import annotations

import abc

from zope.interface import Interface, implementer, taggedValue

from pieceworks.protocols._contract import restates
from pieceworks.protocols.values import BackendSpec, ReplicatedVolume, Source, VolumeRef

__all__ = ["IReplicateToPeer", "ReplicateToPeer"]


class IReplicateToPeer(Interface):
    """The backend can copy a volume or snapshot straight to a peer backend."""

    taggedValue("capability", "replicate-to-peer")

    def accepts_peer(peer: BackendSpec) -> bool:
        """Whether this backend can replicate directly to `peer`.

        Typically: the peer uses the same driver and is reachable from
        here. Answer from configuration only (no data is moved); the
        planner calls it to decide whether the native strategy is eligible.
        """

    def replicate_to(source: Source, peer: BackendSpec, target: VolumeRef) -> ReplicatedVolume:
        """Copy `source` into volume `target` of `peer`, replacing it.

        The target must end up byte for byte equal to `source`, or be left
        as it was (no partial volume) when you raise. Raise
        `VolumeNotFound`/`SnapshotNotFound` for an unknown source,
        `BackendError` for other failures.
        """


@restates
@implementer(IReplicateToPeer)
class ReplicateToPeer(abc.ABC):
    """Base class for `IReplicateToPeer`: implement both methods."""

    @abc.abstractmethod
    def accepts_peer(self, peer: BackendSpec) -> bool: ...

    @abc.abstractmethod
    def replicate_to(
        self, source: Source, peer: BackendSpec, target: VolumeRef
    ) -> ReplicatedVolume: ...
