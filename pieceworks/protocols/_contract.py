"""Tie a capability's base class to its interface so the contract is written once.

A base class such as `Snapshot` restates each interface method (mypy needs the
signature on the class) but not its documentation: `restates` copies the
interface's docstrings onto the class and refuses, at import time, a class
whose method names or parameters drifted from the interface.
"""

from __future__ import annotations

import inspect
from typing import TypeVar

from zope.interface import implementedBy
from zope.interface.interface import Method

__all__ = ["interface_parameters", "restates"]

T = TypeVar("T", bound=type)


def interface_parameters(method: Method) -> tuple[str, ...]:
    """The parameter names an interface method declares, in order."""
    info = method.getSignatureInfo()
    names: list[str] = list(info["positional"])
    if info["varargs"]:
        names.append("*" + info["varargs"])
    names.extend(info.get("kwonly", ()))
    if info["kwargs"]:
        names.append("**" + info["kwargs"])
    return tuple(names)


def _class_parameters(func: object) -> tuple[str, ...]:
    names: list[str] = []
    for p in list(inspect.signature(func).parameters.values())[1:]:  # type: ignore[arg-type]
        if p.kind is p.VAR_POSITIONAL:
            names.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            names.append("**" + p.name)
        else:
            names.append(p.name)
    return tuple(names)


def restates(cls: T) -> T:
    """Class decorator for a capability base class declared `@implementer`.

    For each method of each interface the class directly implements: the
    class must define it with the same parameter names (else `TypeError` at
    import), and it inherits the interface's docstring.
    """
    for iface in implementedBy(cls).declared:
        for name, desc in iface.namesAndDescriptions(all=True):
            if not isinstance(desc, Method):
                continue
            impl = getattr(cls, name, None)
            if impl is None:
                raise TypeError(f"{cls.__name__} does not restate {iface.__name__}.{name}")
            want, got = interface_parameters(desc), _class_parameters(impl)
            if want != got:
                raise TypeError(
                    f"{cls.__name__}.{name}{got} does not match {iface.__name__}.{name}{want}"
                )
            if not getattr(impl, "__doc__", None):
                impl.__doc__ = desc.getDoc()
    return cls
