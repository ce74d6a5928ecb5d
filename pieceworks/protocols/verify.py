"""Run-time check that a driver provides every capability it claims."""

from __future__ import annotations

from zope.interface.interface import InterfaceClass

from pieceworks.protocols._zope import verification_problems
from pieceworks.protocols.capabilities import capabilities_of, capability_name
from pieceworks.protocols.errors import InvalidDriver

__all__ = ["verify_driver"]


def verify_driver(driver: object, name: str) -> tuple[InterfaceClass, ...]:
    """Check every capability `driver` claims and return them.

    `driver` is an instance (a configured backend) or a class. `name` names
    it in the message. Raise `InvalidDriver` listing, for each capability
    that is not fully provided, every missing or mismatched member; one
    message covers all capabilities. A driver that claims no capability at
    all is refused too.
    """
    label = driver.__name__ if isinstance(driver, type) else type(driver).__name__
    claimed = capabilities_of(driver)
    if not claimed:
        raise InvalidDriver(
            f"driver '{name}' ({label}) provides no capability: subclass a base class"
            " from pieceworks.protocols or declare one with @implementer"
        )
    broken = [
        f"capability '{capability_name(iface)}' ({iface.__name__}): " + "; ".join(problems)
        for iface in claimed
        if (problems := verification_problems(iface, driver))
    ]
    if broken:
        raise InvalidDriver(f"driver '{name}' ({label}) " + " | ".join(broken))
    return claimed
