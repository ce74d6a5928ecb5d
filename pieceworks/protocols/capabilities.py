"""The catalogue of capabilities: names, interfaces, and what an object provides."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from zope.interface.interface import InterfaceClass

from pieceworks.protocols._zope import direct_tag, provided_interfaces
from pieceworks.protocols.compress import ICompress
from pieceworks.protocols.extents import IAllocatedExtents, IChangedBlocks
from pieceworks.protocols.object_store import IObjectStore
from pieceworks.protocols.offload import IPullFromObjectStore, IPushToObjectStore
from pieceworks.protocols.replicate import IReplicateToPeer
from pieceworks.protocols.snapshot import ISnapshot
from pieceworks.protocols.stream import IStreamIn, IStreamOut

__all__ = ["CAPABILITIES", "capabilities_of", "capability_name"]

#: Every published capability by its name, in the order the docs list them.
CAPABILITIES: Mapping[str, InterfaceClass] = MappingProxyType(
    {
        "snapshot": ISnapshot,
        "stream-out": IStreamOut,
        "stream-in": IStreamIn,
        "push-to-object-store": IPushToObjectStore,
        "pull-from-object-store": IPullFromObjectStore,
        "compress": ICompress,
        "allocated-extents": IAllocatedExtents,
        "changed-blocks": IChangedBlocks,
        "object-store": IObjectStore,
        "replicate-to-peer": IReplicateToPeer,
    }
)


def capability_name(iface: InterfaceClass) -> str:
    """The capability name of `iface` (its ``capability`` tag, else its Python name).

    An interface that extends a capability without a tag of its own
    inherits the tag lookup only if it sets one; extensions should set
    their own (``taggedValue("capability", "snapshot-v2")``).
    """
    tag = direct_tag(iface, "capability")
    return tag if isinstance(tag, str) else iface.__identifier__


def capabilities_of(obj: object) -> tuple[InterfaceClass, ...]:
    """Every capability `obj` provides: published ones and extensions of them.

    `obj` is a driver instance or a driver class (then: what its instances
    will provide). Includes the base capabilities of extension interfaces,
    ordered as zope.interface resolves them (most specific first).
    """
    published = set(CAPABILITIES.values())
    return tuple(
        i
        for i in provided_interfaces(obj)
        if i in published or any(i.isOrExtends(p) for p in published)
    )
