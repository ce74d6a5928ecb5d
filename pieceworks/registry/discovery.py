"""Find installed drivers and stores through entry points (stevedore).

A package makes a driver available by declaring, in its pyproject.toml::

    [project.entry-points."pieceworks.drivers"]
    mydriver = "mypackage.driver:MyDriver"

The entry point names a class or factory; calling it with the backend's
options (keyword arguments from the configuration) returns a driver. Stores
use the namespace ``pieceworks.stores`` the same way. A driver that fails to
import is reported with its error, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from stevedore import DriverManager, ExtensionManager
from stevedore.exception import NoMatches
from stevedore.extension import Extension

from pieceworks.protocols import DriverNotFound, PieceworksError
from pieceworks.protocols.namespaces import DRIVERS_NAMESPACE, STORES_NAMESPACE

__all__ = [
    "DRIVERS_NAMESPACE",
    "STORES_NAMESPACE",
    "Discovery",
    "DriverLoadError",
    "discover",
    "load_factory",
]


#: What an entry point names: called with options, returns a driver or store.
DriverFactory = Callable[..., object]


class DriverLoadError(PieceworksError):
    """An installed driver's entry point could not be imported."""


@dataclass(frozen=True)
class Discovery:
    """What one scan of a namespace found.

    `factories` maps entry-point names to what they load; `failures` maps
    the names of entry points that failed to load to their error text.
    """

    namespace: str
    factories: Mapping[str, DriverFactory] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)


def discover(namespace: str = DRIVERS_NAMESPACE) -> Discovery:
    """Load every entry point in `namespace`, recording failures by name."""
    failures: dict[str, str] = {}

    def on_failure(
        _manager: ExtensionManager[object], entrypoint: object, exc: BaseException
    ) -> None:
        label = getattr(entrypoint, "name", str(entrypoint))
        target = getattr(entrypoint, "value", "")
        failures[label] = f"{target}: {type(exc).__name__}: {exc}"

    # stevedore keeps entry points per namespace for the process's lifetime;
    # a scan must see distributions installed (or put on sys.path) since.
    ExtensionManager.ENTRY_POINT_CACHE.pop(namespace, None)
    manager: ExtensionManager[object] = ExtensionManager(
        namespace=namespace,
        invoke_on_load=False,
        on_load_failure_callback=on_failure,
    )
    factories: dict[str, DriverFactory] = {}
    ext: Extension[object]
    for ext in sorted(manager.extensions, key=lambda e: e.name):
        factories[ext.name] = ext.plugin
    return Discovery(namespace, dict(sorted(factories.items())), dict(sorted(failures.items())))


def load_factory(name: str, namespace: str = DRIVERS_NAMESPACE) -> DriverFactory:
    """The factory of the driver (or store) called `name`, importing only that one.

    Raise `DriverLoadError` with the import error if it is installed but
    broken, and `DriverNotFound` listing what is installed if it is not.
    """
    ExtensionManager.ENTRY_POINT_CACHE.pop(namespace, None)
    failure: list[str] = []

    def on_failure(
        _manager: ExtensionManager[object], entrypoint: object, exc: BaseException
    ) -> None:
        failure.append(f"{getattr(entrypoint, 'value', '')}: {type(exc).__name__}: {exc}")

    try:
        manager: DriverManager[object] = DriverManager(
            namespace, name, invoke_on_load=False, on_load_failure_callback=on_failure
        )
    except NoMatches:
        if failure:
            raise DriverLoadError(f"{namespace} '{name}' failed to load: {failure[0]}") from None
        known = ", ".join(sorted({ep.name for ep in entry_points(group=namespace)})) or "none"
        raise DriverNotFound(
            f"no {namespace} entry point named '{name}' (installed: {known})"
        ) from None
    factory = manager.driver
    if not callable(factory):
        raise DriverLoadError(f"{namespace} '{name}' names {factory!r}, which is not callable")
    return factory
