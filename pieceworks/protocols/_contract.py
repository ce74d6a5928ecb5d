"""Tie a capability's base class to its interface so the contract is written once.

A base class such as `Snapshot` restates each interface method (mypy needs the
signature on the class) but not its documentation: `restates` copies the
interface's docstrings onto the class and refuses, at import time, a class
whose method names or parameters drifted from the interface.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from zope.interface.interface import InterfaceClass, Method

from pieceworks.protocols._zope import declared_interfaces, method_doc, method_parameters

__all__ = ["base_class_of", "class_parameters", "restates"]

T = TypeVar("T", bound=type)

#: Each capability interface's base class (the one that restates it, typed).
_RESTATED: dict[InterfaceClass, type] = {}


def base_class_of(iface: InterfaceClass) -> type | None:
    """The base class that restates `iface` with annotations (`restates`), or None."""
    return _RESTATED.get(iface)


def class_parameters(func: Callable[..., object]) -> tuple[str, ...]:
    """Parameter names of a method defined on a class, without ``self``."""
    names: list[str] = []
    for p in list(inspect.signature(func).parameters.values())[1:]:
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
    for iface in declared_interfaces(cls):
        _RESTATED.setdefault(iface, cls)
        for name in iface.names(all=True):
            desc = iface[name]
            if not isinstance(desc, Method):
                continue
            impl = getattr(cls, name, None)
            if not callable(impl):
                raise TypeError(f"{cls.__name__} does not restate {iface.__name__}.{name}")
            want, got = method_parameters(desc), class_parameters(impl)
            if want != got:
                raise TypeError(
                    f"{cls.__name__}.{name}{got} does not match {iface.__name__}.{name}{want}"
                )
            if not impl.__doc__:
                impl.__doc__ = method_doc(desc)
    return cls
