"""An encrypted store: any object store, every object sealed under the store's keys.

`EncryptedStore` wraps an `IObjectStore` and seals what it writes and
unseals what it reads (`pieceworks.protocols.encryption`), so every common
algorithm, garbage collection and `pieceworks copy` work on it unchanged.
What stays in clear, on purpose:

* object **names**: ``chunks/<aa>/<keyed id>`` (a keyed HMAC, which reveals
  nothing about the content), ``manifests/<backup-id>.json`` (backup ids are
  random, ``bk-`` and 16 hex digits, or what the user chose);
* ``keys/``: the key files, which hold the master key only wrapped under a
  passphrase (`pieceworks.common_algorithms.keys`);
* ``leases/`` and ``locks/``: who runs a backup or a collection (host, pid),
  so that ``recover`` and a deferred ``gc`` can say who holds the store
  without its passphrase.

Everything else, manifests included, is sealed: a manifest's volume, sizes,
dates, labels and chunk list are unreadable without the key, and `list`
needs the passphrase. Sizes that `head` reports are plain sizes (the sealed
object's size less `SEALED_OVERHEAD`), so recorded chunk sizes match.

Chunk ids: `chunk_id_for(store)` gives the function a writer names chunks
with: the keyed HMAC for an encrypted store, the plain sha256 otherwise.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from zope.interface import alsoProvides

from pieceworks.protocols import IObjectStore
from pieceworks.protocols.chunks import digest_of
from pieceworks.protocols.deferred_sync import IDeferredSync
from pieceworks.protocols.encryption import SEALED_OVERHEAD, StoreKeys, seal_into, unseal
from pieceworks.protocols.object_store import StoredSizes, stored_sizes
from pieceworks.protocols.values import ObjectInfo

__all__ = ["CLEAR_PREFIXES", "KEYS_PREFIX", "EncryptedStore", "as_stored", "chunk_id_for"]

#: Where an encrypted store keeps its key files; a store with one is encrypted.
KEYS_PREFIX: Final = "keys/"
#: Objects kept in clear in an encrypted store (see the module docstring).
CLEAR_PREFIXES: Final = (KEYS_PREFIX, "leases/", "locks/")


class EncryptedStore(StoredSizes):
    """`inner` with every object outside `CLEAR_PREFIXES` sealed under `keys`."""

    def __init__(self, inner: IObjectStore, keys: StoreKeys) -> None:
        self.inner = inner
        self.keys = keys
        self._buffers = threading.local()
        if IDeferredSync.providedBy(inner):
            # Sealing changes no durability rule: batch the syncs as `inner` does.
            alsoProvides(self, IDeferredSync)

    def __repr__(self) -> str:
        return f"EncryptedStore({self.inner!r})"

    @staticmethod
    def _clear(key: str) -> bool:
        return key.startswith(CLEAR_PREFIXES)

    def _sealed(self, key: str, data: bytes | memoryview) -> bytes | memoryview:
        """`data` sealed as object `key`, in this thread's reused buffer (see `seal_into`).

        Valid until this thread seals the next object: each put hands it to
        `inner`, which has written it by the time it returns.
        """
        need = len(data) + SEALED_OVERHEAD
        buffer: bytearray | None = getattr(self._buffers, "buffer", None)
        if buffer is None or len(buffer) < need:
            buffer = self._buffers.buffer = bytearray(need)
        return seal_into(self.keys, key, data, buffer)

    def put(self, key: str, data: bytes | memoryview) -> None:
        self.inner.put(key, data if self._clear(key) else self._sealed(key, data))

    def put_unsynced(self, key: str, data: bytes | memoryview) -> None:
        """deferred-sync, where `inner` provides it: seal, then put without waiting."""
        sealed = data if self._clear(key) else self._sealed(key, data)
        IDeferredSync(self.inner).put_unsynced(key, sealed)

    def sync(self, keys: Iterable[str]) -> None:
        """deferred-sync, where `inner` provides it: one barrier for `keys`."""
        IDeferredSync(self.inner).sync(keys)

    def get(self, key: str) -> bytes:
        return self.open(key, self.inner.get(key))

    def head(self, key: str) -> ObjectInfo:
        info = self.inner.head(key)
        if self._clear(key):
            return info
        return ObjectInfo(info.key, max(0, info.size - SEALED_OVERHEAD), info.modified)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def open(self, key: str, stored: bytes) -> bytes:
        """The content of object `key` read as stored in `inner` (`CorruptionError` if damaged)."""
        return stored if self._clear(key) else unseal(self.keys, key, stored)

    def sizes(self, keys: Iterable[str]) -> dict[str, int]:
        """Plain sizes of the stored `keys`, batched where `inner` batches (stored-sizes)."""
        found = stored_sizes(self.inner, keys)
        return {
            key: size if self._clear(key) else max(0, size - SEALED_OVERHEAD)
            for key, size in found.items()
        }

    def exists(self, key: str) -> bool:
        exists = getattr(self.inner, "exists", None)
        return bool(exists(key)) if callable(exists) else super().exists(key)

    def sweep_temporary(self, *, dry_run: bool = False) -> builtins.list[tuple[str, bool, str]]:
        """`inner`'s temporary files of dead writers, where `inner` can tell (`PosixStore`).

        Returns ``(path, left_behind, reason)`` for each (none if `inner`
        has no ``sweep_temporary``); see `PosixStore.sweep_temporary`.
        """
        sweep = getattr(self.inner, "sweep_temporary", None)
        return builtins.list(sweep(dry_run=dry_run)) if callable(sweep) else []

    @property
    def consistent_listings(self) -> bool:
        """Whether `inner` says its listings see every object written before they start
        (garbage collection's grace period is 0 there: `gc.collection.default_grace`)."""
        return getattr(self.inner, "consistent_listings", False) is True


def as_stored(store: IObjectStore) -> tuple[IObjectStore, Callable[[str, bytes], bytes]]:
    """`store` as its objects are stored, and how to open one read from it.

    For an `EncryptedStore`, its inner store and `EncryptedStore.open`; for
    any other store, the store itself and the identity. For readers that
    must keep the stored bytes of a damaged object (to move it aside).
    """
    if isinstance(store, EncryptedStore):
        return store.inner, store.open
    return store, lambda _key, stored: stored


def chunk_id_for(store: IObjectStore) -> Callable[[bytes | bytearray | memoryview], str]:
    """How chunks written to `store` are named: keyed HMAC if encrypted, else sha256."""
    if isinstance(store, EncryptedStore):
        return store.keys.chunk_id
    return digest_of
