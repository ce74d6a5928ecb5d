"""Capabilities ``push-to-object-store`` and ``pull-from-object-store``.

For a backend at wire length from the manager: instead of streaming every
byte through the manager, the backend itself writes a volume's chunks into
the store (and reads them back for a restore). The manager only sends a
`StoreSpec` and receives the list of chunks, from which it writes the
backup's manifest. The chunk objects follow `pieceworks.protocols.chunks`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from zope.interface import Interface, implementer, taggedValue

from pieceworks.protocols._contract import restates
from pieceworks.protocols.encryption import StoreKeys
from pieceworks.protocols.values import ChunkRef, PushedVolume, Source, StoreSpec, VolumeRef

__all__ = [
    "IIncrementalOffload",
    "IPullFromObjectStore",
    "IPushToObjectStore",
    "ISealedOffload",
    "PullFromObjectStore",
    "PushToObjectStore",
]


class IPushToObjectStore(Interface):
    """The backend can write a volume's chunks into an object store itself."""

    taggedValue("capability", "push-to-object-store")

    def push_to_store(
        source: Source, store: StoreSpec, chunk_size: int, codec: str
    ) -> PushedVolume:
        """Write `source` into `store` as content-addressed chunks.

        Split the source into `chunk_size`-byte chunks (the last may be
        shorter), skip chunks that are all zeros (they are holes and cost
        nothing), and for each other chunk write the object named by
        `chunk_key(sha256)` encoded with `encode_chunk` using `codec` (or
        ``none`` if the backend cannot compress), unless it already exists.
        Return a `PushedVolume`: the source's size and one `ChunkRef` per
        non-zero chunk, sorted by offset. Raise `UnsupportedCodec` for a
        codec you cannot produce at all, `BackendError` for other failures
        (chunks already written may stay: unreferenced, they are collected).
        """


class IPullFromObjectStore(Interface):
    """The backend can fill a volume from chunks in an object store itself."""

    taggedValue("capability", "pull-from-object-store")

    def pull_from_store(
        target: VolumeRef, size: int, store: StoreSpec, chunks: Sequence[ChunkRef]
    ) -> None:
        """Make `target` a `size`-byte volume holding `chunks`, zeros elsewhere.

        Verify each chunk's sha256 before writing it; on a mismatch raise
        `CorruptionError` with the chunk's offset and leave `target` as it
        was (no half-restored volume).
        """


class ISealedOffload(IPushToObjectStore, IPullFromObjectStore):
    """The backend can push to and pull from an **encrypted** store itself (``sealed-offload``).

    An extension of push- and pull-from-object-store (no published
    capability changes): the manager hands the store's derived keys to the
    backend with each call, and the backend writes and reads exactly the
    objects of `pieceworks.protocols.encryption`: chunks named by
    ``keys.chunk_id`` (keyed HMAC-SHA256), every object sealed with the
    object key. The simplest way is to wrap the opened store in
    `pieceworks.protocols.encrypted_store.EncryptedStore`. `keys` are
    secret: never log, print or persist them, and drop them when the call
    returns. A backend without this capability is not offered an encrypted
    store; its backups stream through the manager instead.
    """

    taggedValue("capability", "sealed-offload")

    def push_to_sealed_store(
        source: Source, store: StoreSpec, chunk_size: int, codec: str, keys: StoreKeys
    ) -> PushedVolume:
        """As `IPushToObjectStore.push_to_store`, into the encrypted store `keys` open.

        The `ChunkRef` digests returned are the keyed chunk ids.
        """

    def pull_from_sealed_store(
        target: VolumeRef, size: int, store: StoreSpec, chunks: Sequence[ChunkRef], keys: StoreKeys
    ) -> None:
        """As `IPullFromObjectStore.pull_from_store`, from the encrypted store `keys` open.

        Open each sealed object (authentication failure is `CorruptionError`
        with the chunk's offset) and check the chunk against its keyed id.
        """


class IIncrementalOffload(IPushToObjectStore):
    """The backend can be told which chunks the store holds already (``incremental-offload``).

    An extension of push-to-object-store (no published capability changes):
    without it, a backend that pushes can only tell an object already
    stored from a damaged one by reading it back, so the second backup of
    a volume into Swift or S3 downloads the first one again. With it, the
    manager hands over the chunks of the backup's parent and the backend
    checks them as the manager's own data path does
    (`pieceworks.common_algorithms.format.backup_pipeline`).
    """

    taggedValue("capability", "incremental-offload")

    def push_incremental(
        source: Source,
        store: StoreSpec,
        chunk_size: int,
        codec: str,
        known: Sequence[ChunkRef],
        keys: StoreKeys | None,
    ) -> PushedVolume:
        """As `IPushToObjectStore.push_to_store`, reusing the `known` chunks' objects unread.

        `known` are chunks as manifests of `store` record them (the
        parent's; any order, a digest may repeat). A chunk of `source`
        whose digest is among them is referenced without being written or
        read back, provided the store still holds its object at exactly the
        recorded ``stored_length``: one metadata query for all of them
        (`pieceworks.protocols.stored_sizes`), never a read of an object's
        body. A known chunk whose object is missing, unreadable or of
        another size is encoded and written again (the store heals), never
        referenced as it is. Every other chunk is handled as by
        `push_to_store`. `keys`: None for a plain store; an encrypted
        store's keys, given only to a backend that also provides
        `ISealedOffload`, which then pushes as `push_to_sealed_store` does.
        """


@restates
@implementer(IPushToObjectStore)
class PushToObjectStore(abc.ABC):
    """Base class for `IPushToObjectStore`: implement `push_to_store`."""

    @abc.abstractmethod
    def push_to_store(
        self, source: Source, store: StoreSpec, chunk_size: int, codec: str
    ) -> PushedVolume: ...


@restates
@implementer(IPullFromObjectStore)
class PullFromObjectStore(abc.ABC):
    """Base class for `IPullFromObjectStore`: implement `pull_from_store`."""

    @abc.abstractmethod
    def pull_from_store(
        self, target: VolumeRef, size: int, store: StoreSpec, chunks: Sequence[ChunkRef]
    ) -> None: ...
