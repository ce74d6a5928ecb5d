"""The attribute registry and entry-point discovery.

`Registry` maps attributes (capability interfaces or string tags) to
registered tasks, flows, factories and drivers; `find` returns matches best
first or raises `NoMatch`, a `NotFound`. `discover` and `load_factory` find
installed drivers through stevedore entry points.

The names below are imported on first use (PEP 562 ``__getattr__``): a
command that only opens a store (``pieceworks list``) uses `load_factory`
without importing TaskFlow, which `Registry` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pieceworks.protocols import NotFound
    from pieceworks.registry.attributes import Attribute, attribute_label
    from pieceworks.registry.composition import Composition, rebuild
    from pieceworks.registry.description import Description, Parameter
    from pieceworks.registry.discovery import (
        DRIVERS_NAMESPACE,
        STORES_NAMESPACE,
        Discovery,
        DriverLoadError,
        discover,
        load_factory,
    )
    from pieceworks.registry.errors import (
        BuildArgumentError,
        CompositionConflict,
        ForeignRegistration,
        NotBuildable,
        UnknownAttribute,
    )
    from pieceworks.registry.registration import (
        Buildable,
        Factory,
        Feasibility,
        Kind,
        Registration,
    )
    from pieceworks.registry.registry import NoMatch, Registry

#: Public name -> the module that defines it.
_WHERE = {
    "NotFound": "pieceworks.protocols",
    "Attribute": "pieceworks.registry.attributes",
    "attribute_label": "pieceworks.registry.attributes",
    "Composition": "pieceworks.registry.composition",
    "rebuild": "pieceworks.registry.composition",
    "Description": "pieceworks.registry.description",
    "Parameter": "pieceworks.registry.description",
    "DRIVERS_NAMESPACE": "pieceworks.registry.discovery",
    "STORES_NAMESPACE": "pieceworks.registry.discovery",
    "Discovery": "pieceworks.registry.discovery",
    "DriverLoadError": "pieceworks.registry.discovery",
    "discover": "pieceworks.registry.discovery",
    "load_factory": "pieceworks.registry.discovery",
    "BuildArgumentError": "pieceworks.registry.errors",
    "CompositionConflict": "pieceworks.registry.errors",
    "ForeignRegistration": "pieceworks.registry.errors",
    "NotBuildable": "pieceworks.registry.errors",
    "UnknownAttribute": "pieceworks.registry.errors",
    "Buildable": "pieceworks.registry.registration",
    "Factory": "pieceworks.registry.registration",
    "Feasibility": "pieceworks.registry.registration",
    "Kind": "pieceworks.registry.registration",
    "Registration": "pieceworks.registry.registration",
    "NoMatch": "pieceworks.registry.registry",
    "Registry": "pieceworks.registry.registry",
}


def __getattr__(name: str) -> Any:
    """Import the module defining `name` on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "DRIVERS_NAMESPACE",
    "STORES_NAMESPACE",
    "Attribute",
    "Buildable",
    "BuildArgumentError",
    "Composition",
    "CompositionConflict",
    "Description",
    "Discovery",
    "DriverLoadError",
    "Factory",
    "Feasibility",
    "ForeignRegistration",
    "Kind",
    "NoMatch",
    "NotBuildable",
    "NotFound",
    "Parameter",
    "Registration",
    "Registry",
    "UnknownAttribute",
    "attribute_label",
    "discover",
    "load_factory",
    "rebuild",
]
