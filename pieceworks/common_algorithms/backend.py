"""What the common algorithms work on: a configured backend and a store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from zope.interface.interface import InterfaceClass

from pieceworks.protocols import (
    BackendSpec,
    ChunkRef,
    ConfigError,
    ICompress,
    IObjectStore,
    IPullFromObjectStore,
    IPushToObjectStore,
    PushedVolume,
    Source,
    StoreSpec,
    VolumeRef,
    capability_name,
    validate_id,
    verify_driver,
)
from pieceworks.protocols.encrypted_store import KEYS_PREFIX, EncryptedStore
from pieceworks.protocols.errors import InvalidDriver
from pieceworks.protocols.offload import IIncrementalOffload, ISealedOffload

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

    def handoff_refusal(self, backend: Backend) -> str | None:
        """Why this store cannot be handed to `backend` to offload into; None if it can.

        A store without a spec cannot be reached by a backend; an encrypted
        store only by a backend that can seal objects with its keys
        (sealed-offload); for any other, offload falls back to a strategy
        through the manager, which encrypts.
        """
        if self.spec is None:
            return f"store '{self.name}' cannot be handed to a backend (no store spec)"
        if self.encrypted and not backend.provides(ISealedOffload):
            return (
                f"store '{self.name}' is encrypted and backend '{backend.name}' cannot seal"
                " objects with its keys (no sealed-offload); the manager encrypts instead"
            )
        return None

    def push(
        self,
        backend: Backend,
        source: Source,
        chunk_size: int,
        codec: str,
        known: Sequence[ChunkRef] = (),
    ) -> PushedVolume:
        """Let `backend` push `source` into this store itself (sealed if encrypted).

        `known`: chunks this store's manifests reference (the parent's), for
        a backend with incremental-offload to reuse after a size check
        instead of reading their objects back; other backends are not told.
        """
        assert self.spec is not None
        keys = self.objects.keys if isinstance(self.objects, EncryptedStore) else None
        if known and backend.provides(IIncrementalOffload):
            return backend.use(IIncrementalOffload).push_incremental(
                source, self.spec, chunk_size, codec, known, keys
            )
        if isinstance(self.objects, EncryptedStore):
            return backend.use(ISealedOffload).push_to_sealed_store(
                source, self.spec, chunk_size, codec, self.objects.keys
            )
        return backend.use(IPushToObjectStore).push_to_store(source, self.spec, chunk_size, codec)

    def pull(
        self, backend: Backend, target: VolumeRef, size: int, chunks: Sequence[ChunkRef]
    ) -> None:
        """Let `backend` fill `target` from this store's `chunks` itself (opened if encrypted)."""
        assert self.spec is not None
        if isinstance(self.objects, EncryptedStore):
            backend.use(ISealedOffload).pull_from_sealed_store(
                target, size, self.spec, chunks, self.objects.keys
            )
        else:
            backend.use(IPullFromObjectStore).pull_from_store(target, size, self.spec, chunks)

    def __post_init__(self) -> None:
        validate_id("store name", self.name)
        if not IObjectStore.providedBy(self.objects):
            raise InvalidDriver(
                f"store '{self.name}' ({type(self.objects).__name__}) does not provide"
                " the object-store capability"
            )
        if not self.encrypted and next(iter(self.objects.list(KEYS_PREFIX)), None) is not None:
            # Written through as it is, an encrypted store would get plain objects.
            raise ConfigError(
                f"store '{self.name}' is encrypted: open it with its passphrase"
                " (`unlock` and `EncryptedStore`; the command line asks for it)"
            )
