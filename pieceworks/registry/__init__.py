"""The attribute registry and entry-point discovery.

`Registry` maps attributes (capability interfaces or string tags) to
registered tasks, flows, factories and drivers; `find` returns matches best
first or raises `NoMatch`, a `NotFound`. `discover` and `load_factory` find
installed drivers through stevedore entry points.
"""

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
from pieceworks.registry.registration import Buildable, Factory, Feasibility, Kind, Registration
from pieceworks.registry.registry import NoMatch, Registry

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
