"""What the common algorithms work on: a configured backend and a store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, cast

from zope.interface.interface import InterfaceClass

from pieceworks.common_algorithms.encrypted_store import EncryptedStore
from pieceworks.protocols import (
    BackendSpec,
    ICompress,
    IObjectStore,
    StoreSpec,
    capability_name,
    validate_id,
    verify_driver,
)
from pieceworks.protocols.errors import InvalidDriver

__all__ = ["Backend", "Store"]

T = TypeVar("T")


@dataclass(frozen=True)
class Backend:
    """A configured instance of a driver: a name, the driver, its verified capabilities.

    Build it with `Backend.of`, which verifies every capability the driver
    claims (zope.interface) and refuses it with `InvalidDriver` otherwise.
    """

    name: str
    driver: object
    capabilities: frozenset[InterfaceClass] = field(default=frozenset())
    spec: BackendSpec | None = None

    @classmethod
    def of(cls, name: str, driver: object, spec: BackendSpec | None = None) -> Backend:
        """Verify `driver` and return it as the backend called `name`.

        `spec` (driver name and options) is how a peer backend reaches this
        one directly (replicate-to-peer); without it only strategies through
        the manager or a store can replicate to it.
        """
        validate_id("backend name", name)
        return cls(name, driver, frozenset(verify_driver(driver, name)), spec)

    def provides(self, capability: InterfaceClass) -> bool:
        """Whether the driver provides `capability` (or an extension of it)."""
        return any(c.isOrExtends(capability) for c in self.capabilities)

    def use(self, capability: type[T]) -> T:
        """The driver, typed as `capability` (an interface such as `ISnapshot`).

        Raise `InvalidDriver` if the driver does not provide it, so a
        strategy never calls a method the backend lacks.
        """
        iface = cast(InterfaceClass, capability)
        if not self.provides(iface):
            raise InvalidDriver(f"backend '{self.name}' does not provide {capability_name(iface)}")
        return cast(T, self.driver)

    def push_codec(self, wanted: str) -> str:
        """The codec the backend compresses pushed chunks with, itself.

        `wanted` if it can produce it, else its best codec, else ``none``
        (a backend without compress pushes plain chunks).
        """
        if not self.provides(ICompress):
            return "none"
        codecs = tuple(self.use(ICompress).compression_codecs())
        if wanted == "none" or wanted in codecs:
            return wanted
        return codecs[0] if codecs else "none"

    @property
    def capability_names(self) -> tuple[str, ...]:
        """Names of the capabilities provided, sorted."""
        return tuple(sorted(capability_name(c) for c in self.capabilities))


@dataclass(frozen=True)
class Store:
    """A configured object store: its name, the store object, and its spec.

    `spec` is how a backend reaches the store by itself (offload); a store
    without one can only be written through the manager.
    """

    name: str
    objects: IObjectStore
    spec: StoreSpec | None = None

    @property
    def encrypted(self) -> bool:
        """Whether the store seals its objects (`EncryptedStore`)."""
        return isinstance(self.objects, EncryptedStore)

    def handoff_refusal(self) -> str | None:
        """Why this store cannot be handed to a backend that offloads; None if it can.

        A store without a spec cannot be reached by a backend; an encrypted
        store could be, but no backend can yet seal objects with its keys, so
        offload falls back to a strategy through the manager.
        """
        if self.spec is None:
            return f"store '{self.name}' cannot be handed to a backend (no store spec)"
        if self.encrypted:
            return (
                f"store '{self.name}' is encrypted and the backend cannot seal objects with"
                " its keys; the manager encrypts instead"
            )
        return None

    def __post_init__(self) -> None:
        validate_id("store name", self.name)
        if not IObjectStore.providedBy(self.objects):
            raise InvalidDriver(
                f"store '{self.name}' ({type(self.objects).__name__}) does not provide"
                " the object-store capability"
            )
