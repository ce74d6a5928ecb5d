"""Run-time check that a driver provides every capability it claims."""

from __future__ import annotations

from zope.interface.exceptions import (
    BrokenImplementation,
    BrokenMethodImplementation,
    Invalid,
    MultipleInvalid,
)
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyClass, verifyObject

from pieceworks.protocols.capabilities import capabilities_of, capability_name
from pieceworks.protocols.errors import InvalidDriver

__all__ = ["verify_driver"]


def _problems(exc: Invalid) -> list[str]:
    errors = exc.exceptions if isinstance(exc, MultipleInvalid) else [exc]
    out: list[str] = []
    for err in errors:
        if isinstance(err, BrokenMethodImplementation):
            method = getattr(err.method, "__name__", str(err.method))
            out.append(f"{method}: {err.mess}")
        elif isinstance(err, BrokenImplementation):
            out.append(f"missing {err.name}")
        else:
            out.append(str(err))
    return out


def verify_driver(driver: object, name: str) -> tuple[InterfaceClass, ...]:
    """Check every capability `driver` claims and return them.

    `driver` is an instance (a configured backend) or a class. `name` names
    it in the message. Raise `InvalidDriver` listing, for each capability
    that is not fully provided, every missing or mismatched member; one
    message covers all capabilities.
    """
    is_class = isinstance(driver, type)
    claimed = capabilities_of(driver)
    label = driver.__name__ if is_class else type(driver).__name__
    broken: list[str] = []
    for iface in claimed:
        try:
            if is_class:
                verifyClass(iface, driver)
            else:
                verifyObject(iface, driver)
        except Invalid as exc:
            detail = "; ".join(_problems(exc))
            broken.append(f"capability '{capability_name(iface)}' ({iface.__name__}): {detail}")
    if broken:
        raise InvalidDriver(f"driver '{name}' ({label}) " + " | ".join(broken))
    return claimed

