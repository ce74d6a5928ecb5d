"""Run-time check that a driver provides every capability it claims, as strictly as mypy-zope.

For each capability a driver claims (subclassing its base class or
``@implementer``), `driver_problems` collects every violation at once:

* a member missing, or with the wrong number or names of parameters
  (`zope.interface.verify`);
* a parameter or return annotation incompatible with the interface's, or
  an ``async def`` where the interface is synchronous
  (`pieceworks.protocols._signatures`);
* for a class: abstract methods left unimplemented, so it cannot be
  instantiated (a base class subclassed without its methods).
"""

from __future__ import annotations

import inspect

from zope.interface.interface import InterfaceClass, Method

from pieceworks.protocols._signatures import signature_problems
from pieceworks.protocols._zope import verification_problems
from pieceworks.protocols.capabilities import capabilities_of, capability_name
from pieceworks.protocols.errors import InvalidDriver

__all__ = ["driver_problems", "verify_driver"]


def driver_problems(
    driver: object, claimed: tuple[InterfaceClass, ...] | None = None
) -> dict[str, list[str]]:
    """Every problem of every capability `driver` claims, by capability name.

    `driver` is an instance or a class; `claimed` defaults to
    `capabilities_of(driver)`. Capabilities without a problem are absent;
    abstract methods that belong to no claimed capability are listed under
    ``"class"``.
    """
    claimed = capabilities_of(driver) if claimed is None else claimed
    cls = driver if isinstance(driver, type) else type(driver)
    problems: dict[str, list[str]] = {}
    for iface in claimed:
        found = verification_problems(iface, driver)
        broken = {p.split(":", 1)[0].removeprefix("missing ").strip() for p in found}
        found += [p for p in signature_problems(iface, cls) if p.split(":", 1)[0] not in broken]
        if found:
            problems.setdefault(capability_name(iface), []).extend(found)
    if isinstance(driver, type) and inspect.isabstract(driver):
        for member in sorted(getattr(driver, "__abstractmethods__", ())):
            owner = next(
                (i for i in claimed if isinstance(i.get(member), Method)),
                None,
            )
            key = capability_name(owner) if owner is not None else "class"
            problems.setdefault(key, []).append(
                f"{member}: abstract (not implemented), so the class cannot be instantiated"
            )
    return problems


def verify_driver(driver: object, name: str) -> tuple[InterfaceClass, ...]:
    """Check every capability `driver` claims and return them.

    `driver` is an instance (a configured backend) or a class. `name` names
    it in the message. Raise `InvalidDriver` listing, for each capability
    that is not fully provided, every problem `driver_problems` finds; one
    message covers all capabilities, and `InvalidDriver.problems` holds them
    as data. A driver that claims no capability at all is refused too.
    """
    label = driver.__name__ if isinstance(driver, type) else type(driver).__name__
    claimed = capabilities_of(driver)
    if not claimed:
        raise InvalidDriver(
            f"driver '{name}' ({label}) provides no capability: subclass a base class"
            " from pieceworks.protocols or declare one with @implementer"
        )
    problems = driver_problems(driver, claimed)
    if problems:
        ifaces = {capability_name(i): i.__name__ for i in claimed}
        broken = [
            f"capability '{cap}' ({ifaces[cap]}): " + "; ".join(found)
            if cap in ifaces
            else f"{cap}: " + "; ".join(found)
            for cap, found in problems.items()
        ]
        raise InvalidDriver(f"driver '{name}' ({label}) " + " | ".join(broken), problems)
    return claimed
