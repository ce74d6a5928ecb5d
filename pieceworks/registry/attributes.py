"""Attributes: what the registry is searched by.

An attribute is a capability interface (`ISnapshot`, or any interface that
extends one) or a string tag (``"live-backup"``). A string naming a
published capability (``"snapshot"``) means that capability's interface, so
a command line can search by capability names.
"""

from __future__ import annotations

from collections.abc import Iterable

from zope.interface import Interface
from zope.interface.interface import InterfaceClass

from pieceworks.protocols import CAPABILITIES, capability_name

__all__ = ["Attribute", "attribute_label", "expand", "normalise"]

#: A capability interface or a string tag.
Attribute = InterfaceClass | str


def normalise(attribute: Attribute) -> Attribute:
    """Map a capability name to its interface; check everything else."""
    if isinstance(attribute, InterfaceClass):
        return attribute
    if isinstance(attribute, str) and attribute:
        return CAPABILITIES.get(attribute, attribute)
    raise TypeError(
        f"registry attribute must be a capability interface or a non-empty string tag,"
        f" not {attribute!r}"
    )


def expand(attributes: Iterable[Attribute]) -> frozenset[Attribute]:
    """The index keys a registration providing `attributes` is found under.

    An interface also counts as each interface it extends, so a search for a
    base capability finds providers of its extensions.
    """
    keys: set[Attribute] = set()
    for attribute in attributes:
        a = normalise(attribute)
        if isinstance(a, InterfaceClass):
            keys.update(i for i in a.__iro__ if i is not Interface)
        else:
            keys.add(a)
    return frozenset(keys)


def attribute_label(attribute: Attribute) -> str:
    """How an attribute is named in messages: ``'live-backup'`` or ``snapshot``."""
    if isinstance(attribute, InterfaceClass):
        return capability_name(attribute)
    return repr(attribute)
