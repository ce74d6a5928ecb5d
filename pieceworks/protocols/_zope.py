"""Typed access to the parts of zope.interface that its bundled stubs leave untyped.

The stubs shipped with mypy-zope declare some introspection methods without
types; this module is the one place that calls them, so that everything
else stays `mypy --strict` clean without casts.
"""

from __future__ import annotations

from collections.abc import Iterator

from zope.interface import implementedBy, providedBy
from zope.interface.exceptions import BrokenImplementation, BrokenMethodImplementation, Invalid
from zope.interface.interface import InterfaceClass, Method
from zope.interface.verify import verifyClass, verifyObject

__all__ = [
    "declared_interfaces",
    "direct_tag",
    "method_doc",
    "method_parameters",
    "provided_interfaces",
    "verification_problems",
]


def method_parameters(method: Method) -> tuple[str, ...]:
    """The parameter names an interface method declares (``*args``/``**kw`` marked)."""
    names = [str(n) for n in method.positional]
    if method.varargs:
        names.append(f"*{method.varargs}")
    if method.kwargs:
        names.append(f"**{method.kwargs}")
    return tuple(names)


def method_doc(method: Method) -> str:
    """The docstring of an interface method."""
    return str(method.__doc__ or "")


def direct_tag(iface: InterfaceClass, tag: str) -> object:
    """The tagged value `tag` set on `iface` itself (not inherited), or None."""
    query = getattr(iface, "queryDirectTaggedValue")  # noqa: B009 (untyped in the stubs)
    value: object = query(tag)
    return value


def provided_interfaces(obj: object) -> Iterator[InterfaceClass]:
    """Every interface `obj` provides (for a class: its instances), flattened."""
    spec = implementedBy(obj) if isinstance(obj, type) else providedBy(obj)
    for iface in spec.__iro__:
        if isinstance(iface, InterfaceClass):
            yield iface


def declared_interfaces(cls: type) -> tuple[InterfaceClass, ...]:
    """The interfaces `cls` declares directly with `@implementer`."""
    return tuple(i for i in implementedBy(cls).declared if isinstance(i, InterfaceClass))


def verification_problems(iface: InterfaceClass, obj: object) -> list[str]:
    """What `obj` (instance or class) lacks to provide `iface`; empty if nothing."""
    try:
        if isinstance(obj, type):
            verifyClass(iface, obj)
        else:
            verifyObject(iface, obj)
    except Invalid as exc:
        errors: list[Invalid] = list(getattr(exc, "exceptions", None) or [exc])
        out: list[str] = []
        for err in errors:
            if isinstance(err, BrokenMethodImplementation):
                method = getattr(err.method, "__name__", err.method)
                out.append(f"{method}: {err.mess}")
            elif isinstance(err, BrokenImplementation):
                member = getattr(err.name, "__name__", err.name)
                out.append(f"missing {member}")
            else:
                out.append(str(err))
        return out
    return []
