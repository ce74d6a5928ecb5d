"""Attributes: what the registry is searched by.

Two separate namespaces:

- a **capability**: a capability interface (`ISnapshot`, or any interface
  that extends one), or its name prefixed ``capability:`` as a string
  (``"capability:snapshot"``), so a command line can search by capability;
- a **tag**: any other non-empty string (``"live-backup"``). A tag is never
  turned into a capability: the tag ``"snapshot"`` and the capability
  ``capability:snapshot`` are different attributes.

An unknown ``capability:NAME`` is refused (`UnknownAttribute`) with the
closest published names, since it can match nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from zope.interface import Interface
from zope.interface.interface import InterfaceClass

from pieceworks.protocols import CAPABILITIES, capability_name
from pieceworks.registry.errors import UnknownAttribute

__all__ = [
    "CAPABILITY_PREFIX",
    "Attribute",
    "attribute_label",
    "attribute_text",
    "expand",
    "normalise",
]

#: A capability interface or a string tag.
Attribute = InterfaceClass | str
#: How a string names a capability rather than a tag.
CAPABILITY_PREFIX = "capability:"


def normalise(attribute: Attribute) -> Attribute:
    """Map ``capability:NAME`` to its interface; keep tags as they are; refuse anything else."""
    if isinstance(attribute, InterfaceClass):
        return attribute
    if isinstance(attribute, str) and attribute:
        if not attribute.startswith(CAPABILITY_PREFIX):
            return attribute
        name = attribute[len(CAPABILITY_PREFIX) :]
        iface = CAPABILITIES.get(name)
        if iface is None:
            close = difflib.get_close_matches(name, list(CAPABILITIES), n=3)
            hint = f"; did you mean {', '.join(CAPABILITY_PREFIX + c for c in close)}?"
            raise UnknownAttribute(
                f"unknown capability {attribute!r}"
                + (hint if close else f" (capabilities: {', '.join(CAPABILITIES)})")
            )
        return iface
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
    """How an attribute is named in messages: ``'live-backup'`` or ``capability:snapshot``."""
    if isinstance(attribute, InterfaceClass):
        return CAPABILITY_PREFIX + capability_name(attribute)
    return repr(attribute)


def attribute_text(attribute: Attribute) -> str:
    """How an attribute is written in JSON and tables: ``live-backup``, ``capability:snapshot``."""
    if isinstance(attribute, InterfaceClass):
        return CAPABILITY_PREFIX + capability_name(attribute)
    return attribute
