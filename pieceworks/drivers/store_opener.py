"""Open an object store from a `StoreSpec`, on the side of a backend that offloads.

A backend that provides push-to-object-store or pull-from-object-store
receives only a `StoreSpec` (a store name, a store driver name and string
options) and must reach the store by itself. `open_store` finds the store
driver among the installed ``pieceworks.stores`` entry points (``posix``,
``swift`` and ``s3`` ship with pieceworks; other packages may add more) and
calls it with the spec's options as keyword arguments::

    store = open_store(StoreSpec("lab", "posix", {"path": "/srv/backups"}))

A store is created if it does not exist (a backend pushing a backup wants
that); ``open_store(spec, create=False)`` asks a driver that takes the
``create`` option (``posix``, ``swift``, ``s3``) to create nothing, and a
missing store is then `StoreMissing`, naming it (a backend that only reads,
a restore pulling from the store, wants that).

Every failure to open a store is a `ConfigError` that names the store and
its driver (and, for an unknown driver, the known ones), never an option's
value: options may hold credentials. A store that fails for a reason that is
not its configuration (a network error, say) raises its own `BackendError`
or `TransientError`, which passes through unchanged.

This module uses the standard library's `importlib.metadata` only, so that
a target service (`pieceworks.drivers.remote_target`) needs nothing above
`pieceworks.protocols`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Final

from pieceworks.protocols import (
    BackendError,
    ConfigError,
    IObjectStore,
    PieceworksError,
    StoreSpec,
)
from pieceworks.protocols.namespaces import STORES_NAMESPACE

__all__ = ["STORES_GROUP", "known_store_drivers", "open_store", "store_factory"]

#: The entry-point group that names store drivers (`STORES_NAMESPACE`, defined once).
STORES_GROUP: Final = STORES_NAMESPACE


def _entry_points() -> dict[str, EntryPoint]:
    """Installed store drivers by name (the first distribution wins a clash)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=STORES_GROUP):
        found.setdefault(ep.name, ep)
    return found


def known_store_drivers() -> list[str]:
    """The names of every installed store driver, sorted."""
    return sorted(_entry_points())


def store_factory(driver: str) -> Callable[..., object]:
    """The class or factory the store driver named `driver` declares.

    Raise `ConfigError` if no installed package declares it (the message
    lists the known drivers) or if it cannot be imported (the message gives
    the import error).
    """
    found = _entry_points()
    ep = found.get(driver)
    if ep is None:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(f"unknown store driver {driver!r}: known store drivers are {known}")
    try:
        factory = ep.load()
    except Exception as exc:  # an import error of any kind, reported by name
        raise ConfigError(
            f"store driver {driver!r} ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(factory):
        raise ConfigError(f"store driver {driver!r} ({ep.value}) is not callable")
    return factory  # type: ignore[no-any-return]


def open_store(spec: StoreSpec, *, create: bool = True) -> IObjectStore:
    """Open the store `spec` describes and return it.

    The store driver is called with ``**spec.options`` (and
    ``create=False`` when `create` is false and the driver declares that
    option: a store that does not exist is then `StoreMissing` and nothing
    is created; a driver without the option is opened as it is). Raise `ConfigError`
    for an unknown driver, for options the driver refuses (its own
    `ConfigError`, or a `TypeError` for a missing or unexpected option) and
    for a driver that returns something that is not an object store. Any
    other `PieceworksError` the driver raises passes through; an unexpected
    exception becomes a `BackendError`.
    """
    factory = store_factory(spec.driver)
    where = f"store {spec.name!r} (driver {spec.driver!r})"
    options: dict[str, object] = dict(spec.options)
    if not create and _takes_create(factory):
        options["create"] = False
    try:
        store = factory(**options)
    except PieceworksError:
        raise
    except TypeError as exc:
        # Messages of TypeError name parameters, never the values passed.
        given = ", ".join(sorted(spec.options)) or "none"
        raise ConfigError(f"{where}: bad options (given: {given}): {exc}") from exc
    except Exception as exc:
        raise BackendError(f"{where}: cannot open: {type(exc).__name__}: {exc}") from exc
    if not IObjectStore.providedBy(store):
        raise ConfigError(
            f"{where}: the driver returned {type(store).__name__}, which does not provide"
            " the object-store capability"
        )
    return store


def _takes_create(factory: Callable[..., object]) -> bool:
    """Whether `factory` declares a ``create`` keyword parameter (not merely ``**kwargs``)."""
    try:
        found = inspect.signature(factory).parameters.get("create")
    except (TypeError, ValueError):
        return False
    return found is not None and found.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
