"""Capability ``object-store``: where backups live.

A store is a flat key space of immutable-once-written objects (POSIX
directory, Swift container, S3 bucket). Implement `IObjectStore` (five
methods), or subclass `ObjectStore` to get `exists` and `put_if_absent`
for free. Keys are validated by the caller (`validate_key`): ``/``-separated
safe names that map onto a directory tree without escaping it.

Extension ``stored-sizes`` (`IStoredSizes`, base class `StoredSizes`): a
store that answers "which of these keys are stored, and how large is each?"
for a whole batch at once (one ``stat`` per key, a container listing, ...).
`stored_sizes` asks any store, using the extension where it is provided
and one `head` per key elsewhere.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator

from zope.interface import Interface, implementer, taggedValue

from pieceworks.protocols._contract import restates
from pieceworks.protocols.errors import ObjectNotFound
from pieceworks.protocols.values import ObjectInfo

__all__ = ["IObjectStore", "IStoredSizes", "ObjectStore", "StoredSizes", "stored_sizes"]


class IObjectStore(Interface):
    """A place that stores named objects: the target of every backup."""

    taggedValue("capability", "object-store")

    def put(key: str, data: bytes | memoryview) -> None:
        """Store `data` under `key`, replacing any object already there.

        Atomic: a reader sees the whole old object or the whole new one,
        never a part. Once `put` returns the object survives a crash of
        this process. Raise `TransientError` for a failure worth retrying.
        """

    def get(key: str) -> bytes:
        """Return the whole object stored under `key`; `ObjectNotFound` if none."""

    def head(key: str) -> ObjectInfo:
        """Return size and modification time of `key`; `ObjectNotFound` if none."""

    def delete(key: str) -> None:
        """Remove `key`. Removing an object that does not exist is not an error."""

    def list(prefix: str) -> Iterator[str]:
        """Yield every key that starts with `prefix`, in sorted order.

        ``""`` lists everything. Keys written or deleted while the
        iteration runs may or may not be seen.
        """


@restates
@implementer(IObjectStore)
class ObjectStore(abc.ABC):
    """Base class for `IObjectStore`: implement put, get, head, delete, list.

    Free: `exists` and `put_if_absent`; override them where the backend has
    something cheaper.
    """

    @abc.abstractmethod
    def put(self, key: str, data: bytes | memoryview) -> None: ...

    @abc.abstractmethod
    def get(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]: ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """Store `data` unless `key` exists; return whether it was written.

        For content-addressed objects, where an existing object under the
        same key is by construction the same bytes.
        """
        if self.exists(key):
            return False
        self.put(key, data)
        return True


class IStoredSizes(IObjectStore):
    """An object store that reports the sizes of many objects in one call (``stored-sizes``).

    An extension of ``object-store``: a search for ``object-store`` finds
    its providers too.
    """

    taggedValue("capability", "stored-sizes")

    def sizes(keys: Iterable[str]) -> dict[str, int]:
        """Return ``{key: size in bytes}`` for each of `keys` that is stored and readable.

        A key that is absent, or whose object cannot be read (a POSIX file
        without read permission), is left out of the result, never an
        error; keys may repeat and come in any order. Cheap: metadata
        only, never object bodies. Raise `InvalidName` for a malformed key
        and `TransientError`/`BackendError` when the store cannot answer.
        """


@restates
@implementer(IStoredSizes)
class StoredSizes(ObjectStore):
    """Base class for `IStoredSizes`: `ObjectStore` plus a `sizes` built on `head`.

    Override `sizes` with something batched (a listing, concurrent HEADs).
    """

    def sizes(self, keys: Iterable[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for key in keys:
            try:
                found[key] = self.head(key).size
            except ObjectNotFound:
                continue
        return found


def stored_sizes(store: IObjectStore, keys: Iterable[str]) -> dict[str, int]:
    """``{key: size}`` for each of `keys` stored in `store` (absent keys left out).

    One batched `IStoredSizes.sizes` call where the store provides it, else
    one `head` per key.
    """
    if IStoredSizes.providedBy(store):
        return store.sizes(keys)
    found: dict[str, int] = {}
    for key in keys:
        try:
            found[key] = store.head(key).size
        except ObjectNotFound:
            continue
    return found
