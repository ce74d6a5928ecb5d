"""Extension ``deferred-sync`` of ``object-store``: write many objects, make them durable once.

`IObjectStore.put` is durable when it returns: on a POSIX store that is two
``fsync`` calls per object (the file, then its directory), and the worker
threads of a backup wait for the disk after every chunk. A store providing
`IDeferredSync` lets the writer put every chunk of a backup without waiting
and then ask, once, before the manifest is written, that they all be
durable (`sync`), so the disk works while the threads hash and compress.

The contract that keeps a backup crash-safe (docs/format.md): **no manifest
may reference a chunk that is not durable**. The chunk pipeline therefore
calls `sync` on every chunk a backup references that it wrote or found in
the store before returning its chunk list, and the manifest, written with
the ordinary durable `put`, comes after. An object put with
`put_unsynced` and lost or damaged by a crash before `sync` is referenced by
no manifest; the next backup finds it missing or failing its hash and
stores it again.
"""

from __future__ import annotations

from collections.abc import Iterable

from zope.interface import taggedValue

from pieceworks.protocols.object_store import IObjectStore

__all__ = ["IDeferredSync"]


class IDeferredSync(IObjectStore):
    """An object store whose writes can be made durable later, many at once.

    An extension of ``object-store``: a search for ``object-store`` finds
    its providers too.
    """

    taggedValue("capability", "deferred-sync")

    def put_unsynced(key: str, data: bytes | memoryview) -> None:
        """Store `data` under `key` like `put`, but not yet durably.

        Atomic and visible at once, as `put`; a crash of the machine before
        `sync` covers `key` may lose the object or leave it damaged (a
        reader of a chunk finds that out from its hash). Raise as `put`.
        """

    def sync(keys: Iterable[str]) -> None:
        """Make every object of `keys` durable, whoever wrote it and however.

        When this returns each of `keys` that exists survives a crash of
        the machine; keys that do not exist are skipped. One barrier for
        the whole batch (a POSIX store: one ``fsync`` per file, then one per
        directory, after the writes' writeback has been started). Raise
        `TransientError`/`BackendError` if the store cannot make them
        durable: the caller must then not reference them.
        """
