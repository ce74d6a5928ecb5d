"""`key init` against writers of a plain store: never a store mixing plain and sealed data.

`key init` makes an empty plain store encrypted. A backup that opened the
store as plain just before (it saw no key file) would write plain chunks
and a plain manifest into a store that has become encrypted: the manifest
cannot be read with the passphrase, and nothing says why. Both sides
therefore write a marker first and look for the other's after, so that at
least one of them sees the other (the store is linearizable: a put is
visible to every list that starts after it returned):

``key init``
    writes ``locks/key-init.<token>`` (a marker as `gc.leases` writes
    them: host, pid, process start, run token), then looks at the whole
    store: anything but its marker (a backup's lease, a chunk, a manifest,
    another init's marker or key) and it removes its marker and refuses,
    having written no key. Only then is the key file written, and the
    marker removed after it: a key is never withdrawn once written, so
    nobody can have sealed data under a master key that then disappears.
a backup of a plain store (or ``pieceworks copy`` into one)
    takes its lease (`gc.leases`), then `require_still_plain`: a key file,
    or the live marker of a `key init`, and it stops before writing any
    data (`StoreEncryptedMeanwhile`, its lease released). Just before its
    manifest it looks for key files once more.
a replication through a plain store (``operations.replicate``)
    does the same around what it writes there: its lease, then a look,
    before staging chunks (and a look for key files before it reads them
    back); its run journal (``runs/<id>``, an in-use source's temporary
    snapshot), then a look, before taking the snapshot (the journal entry
    removed again if it stops).

If ``key init``'s look missed the lease (or the journal), that object was
written after the marker, so the writer's look sees the marker, or the key
written before the marker went: whatever a writer puts first works as its
lease here, as long as it looks after it. Writers of objects that stay in
clear in an encrypted store (``leases/``, ``locks/``: a collection's lock,
`gc`, ``prune``, ``forget``, which otherwise only delete) need no look. A
marker whose owner is dead (a killed ``key init``) is ignored by both and
removed by the next ``key init``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from pieceworks.common_algorithms.gc.leases import (
    LEASE_PREFIX,
    Marker,
    put_marker,
    read_marker,
    remove_own,
    store_clock,
)
from pieceworks.protocols import IObjectStore, ObjectNotFound, PieceworksError
from pieceworks.protocols.encrypted_store import KEYS_PREFIX, EncryptedStore
from pieceworks.protocols.owner import Owner

__all__ = [
    "KEY_INIT_PREFIX",
    "NO_MANIFEST",
    "OTHERS_SHOWN",
    "StoreEncryptedMeanwhile",
    "Obstacles",
    "key_init_marked",
    "obstacles_to_init",
    "remove_stale",
    "require_still_plain",
]

log = logging.getLogger(__name__)

#: How many other objects a refusal of ``key init`` names (one more is looked for: "...").
OTHERS_SHOWN: Final = 3
#: Where a running ``key init`` keeps its marker: ``locks/key-init.<token>``.
KEY_INIT_PREFIX: Final = "locks/key-init."


#: What a backup that stops before its manifest (`require_still_plain`, `before_data` false) left.
NO_MANIFEST: Final = (
    "its manifest was not written, so no backup came to exist (its plain chunks"
    " are unreferenced: `pieceworks prune` removes them)"
)


class StoreEncryptedMeanwhile(PieceworksError):
    """A plain store was encrypted (`key init`) while a backup, copy or replication wrote to it.

    The writer stopped before its manifest (a replication: before filling
    its target): no backup came to exist, and the store holds no plain
    manifest beside its key.
    """

    hint = "run it again: the store is encrypted now, so it asks for the passphrase"


@dataclass
class Obstacles:
    """What keeps ``key init`` from encrypting a store, sorted by kind.

    `keys`: key files (the store is encrypted, or another init got there);
    `inits`: live markers of other ``key init`` runs; `leases`: live or
    stale leases (a backup writing, or a restore or verify reading);
    `other`: any other object (up to a few named);
    `stale_inits`: markers of dead ``key init`` runs (no obstacle).
    """

    keys: list[str] = field(default_factory=list)
    inits: list[Marker] = field(default_factory=list)
    leases: list[Marker] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    stale_inits: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.keys or self.inits or self.leases or self.other)

    def message(self) -> str:
        """Why ``key init`` stepped back, in words (what it found, who holds it)."""
        if self.keys or self.inits:
            who = "; ".join(m.describe() for m in self.inits) or ", ".join(self.keys[:3])
            return (
                f"another `key init` ran at the same time ({who}): this one stepped back"
                " and wrote no key (one store, one master key); `pieceworks key list` shows"
                " the store's key once that one has finished"
            )
        writing = [m for m in self.leases if m.lease_kind != "read"]  # not a restore's
        if writing:
            held = "; ".join(f"{m.describe_holder()} ({m.owner}, {m.state})" for m in writing[:3])
            return (
                f"a backup is being written into this store ({held}): encrypting it now would"
                " mix its plain data with sealed data, so no key was written and the store"
                " stays plain. Encryption starts with an empty store: encrypt a new one and"
                " copy the backups into it with `pieceworks copy`"
            )
        shown = ", ".join(self.other[:OTHERS_SHOWN])
        shown += ", ..." if len(self.other) > OTHERS_SHOWN else ""
        readers = [f"{m.describe_holder()} ({m.owner}, {m.state})" for m in self.leases[:3]]
        found = "; ".join([shown] * bool(shown) + readers)  # only read leases are left here
        return (
            f"the store already holds objects ({found}); encryption starts with an empty"
            " store (copy existing backups into a new encrypted store with `pieceworks copy`)"
        )


def _marker(store: IObjectStore, key: str) -> Marker | None:
    """The marker at `key` aged on the store's clock; None if it is gone (removed since listed)."""
    try:
        now = store_clock(store, key)()
    except ObjectNotFound:
        return None
    return read_marker(store, key, now)


def obstacles_to_init(store: IObjectStore, own_marker: str) -> Obstacles:
    """Everything in `store` but `own_marker`, sorted into `Obstacles`.

    Key files, ``key init`` markers and leases are listed whole (their
    prefixes are small); of any other object only the first few are
    (`OTHERS_SHOWN` + 1), so a big store is refused without listing it all.
    Stale markers of other ``key init`` runs are no obstacle (`stale_inits`).
    """
    found = Obstacles()
    found.keys = list(store.list(KEYS_PREFIX))
    for name in store.list(KEY_INIT_PREFIX):
        marker = None if name == own_marker else _marker(store, name)
        if marker is None:
            continue
        if marker.stale:
            found.stale_inits.append(name)
        else:
            found.inits.append(marker)
    for name in store.list(LEASE_PREFIX):
        marker = _marker(store, name)
        if marker is not None:
            found.leases.append(marker)
    skip = (KEYS_PREFIX, KEY_INIT_PREFIX, LEASE_PREFIX)
    for name in store.list(""):
        if not name.startswith(skip):
            found.other.append(name)
            if len(found.other) > OTHERS_SHOWN:
                break
    return found


@contextmanager
def key_init_marked(store: IObjectStore) -> Iterator[str]:
    """Hold this run's ``locks/key-init.<token>`` marker inside the block; yield its key.

    Removed when the block ends (only if it is still this run's), on
    success and failure.
    """
    owner = Owner.current()
    key = KEY_INIT_PREFIX + owner.token
    put_marker(store, key, "key-init", "key-init", owner, time.time())
    try:
        yield key
    finally:
        remove_own(store, key, owner.token)


def remove_stale(store: IObjectStore, marker: Marker) -> None:
    """Delete a stale ``key init`` marker, unless it was re-written (by a live owner) since."""
    if marker.token:
        remove_own(store, marker.key, marker.token)
    else:
        store.delete(marker.key)


def require_still_plain(
    store_name: str,
    objects: IObjectStore,
    *,
    before_data: bool = True,
    writer: str = "backup",
    late: str = NO_MANIFEST,
) -> None:
    """Raise `StoreEncryptedMeanwhile` if `objects`, opened plain, is (being) encrypted.

    Nothing to check for an `EncryptedStore`. Call it once the writer's
    first object (its lease, a replication's run journal) is written: then
    (`before_data`: no data written yet) a key file or a live ``key init``
    marker stops it (a stale one, of a killed ``key init``, is removed);
    before its last step (a manifest, a replica filled from staged chunks;
    `before_data` false) a key file does. `writer` names what stops in the
    message ("backup", "replication"), `late` what the late stop left.
    """
    if isinstance(objects, EncryptedStore):
        return
    keys = [name for name in objects.list(KEYS_PREFIX) if name.endswith(".json")]
    if keys:
        done = "it stopped before writing any data" if before_data else late
        raise StoreEncryptedMeanwhile(
            f"store '{store_name}' was encrypted (`pieceworks key init`) after this {writer}"
            f" opened it as a plain store: {done}. Run the {writer} again with the passphrase"
        )
    if not before_data:
        return
    for name in list(objects.list(KEY_INIT_PREFIX)):
        marker = _marker(objects, name)
        if marker is not None and marker.stale:  # a killed `key init`'s: nobody needs it
            log.info("removing the marker of a dead key init: %s (%s)", name, marker.reason)
            remove_stale(objects, marker)
        elif marker is not None:
            raise StoreEncryptedMeanwhile(
                f"a `pieceworks key init` is encrypting store '{store_name}' right now"
                f" ({marker.describe()}): this {writer} opened it as a plain store and stopped"
                " before writing any data. Run it again once the key init has ended (with"
                " the passphrase if it encrypted the store)"
            )
