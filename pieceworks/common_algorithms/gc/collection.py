"""Leases and garbage collection: delete unreferenced chunks, never racing a backup or a reader.

Chunks are shared between backups and a backup writes its chunks before its
manifest, so for a while a running backup's chunks (new ones, and old ones
it decided not to send again) are referenced by no manifest. Garbage
collection must not delete them. Nor may it delete, under a restore (or
verify, copy, check) that has read a manifest, the chunks of that backup
after a concurrent ``delete`` removed the manifest: the reader would fail
with "chunk missing", which reads as corruption. The protocol uses three
kinds of markers, small JSON objects (kind, id, host, pid, started,
renewed) in the store:

``leases/<backup_id>``
    A backup writes its lease before it writes (or decides to reuse) any
    chunk, and before it reads the manifests it deduplicates against. Then
    it looks for live collector locks and, while there is one, waits
    (polling, up to a timeout, then `GCLockTimeout` naming the holder).
    It removes the lease after its manifest is written, or on failure.

``leases/read.<token>``
    A *read lease* (`ReadLease`, kind ``read``): an operation that reads
    chunks after reading manifests (a restore into a volume or a file,
    verify, copy from this store, check) writes it before it reads the
    first manifest, then waits out live collector locks exactly as a
    backup does, and removes it once it has read its last chunk (or
    failed, or was interrupted). Readers never exclude each other. It lies
    under ``leases/``, so collectors of earlier versions, which defer on
    any live marker there, respect it too.

``locks/gc.<token>``
    A collector writes its lock (uniquely named, so two collectors never
    remove each other's), then looks for live leases (both kinds). If there
    is any, it removes its lock and defers, reporting what blocks it.
    Otherwise it reads every manifest, deletes every ``chunks/`` object
    none references, and removes its lock.

Each side writes its own marker before it looks for the other's, and a
store lists what was written before the listing starts, so whichever looks
second sees the first: a backup and a collector never both proceed. A
backup that started earlier and finished (manifest written, lease removed)
before the collector looked is protected by its manifest, which the
collector reads after looking at leases.

Why a reader never loses a chunk it needs. Name the reader's steps W (write
the read lease), S (look at collector locks until none is live) and R (read
the manifest of backup B, found), then its chunk reads until it removes the
lease; a collector C's steps L (write its lock), V (look at leases), M
(list and read the manifests) and D (delete the chunks they do not
reference), then U (remove its lock). Each step is a store operation that
sees what was written before it started. C deletes a chunk of B only if no
manifest referencing it exists at M. For any C that overlaps the reader:

1. V after W: C sees the live read lease and defers; it deletes nothing.
2. V before W: then L < V < W < S. Either U came before S, or S found
   C's lock and the reader waited until U (or until the lock went stale:
   its owner dead, as for a backup). So C ended before R. If B's manifest
   existed at M, C kept B's chunks. If not, B's manifest was written
   between M and R by a backup (or a copy) holding a write lease from
   before its first chunk until after its manifest, which by the rule
   above means that C deferred, or that the writer waited for C to end
   before it wrote or reused any chunk: B's chunks were present when its
   manifest appeared, after C's deletions.

So every C that deletes anything ends before R, and none deletes later
while the lease lives (case 1). A ``delete`` meanwhile removes B's manifest
(B stops existing at once) and its collection defers until the reader is
done; the next collection frees the chunks. The manifest whose chunks are
read must be read inside the lease: a manifest read before W (say, to check
a target's size or print a name) may be used for anything but choosing
chunks. A retried or resumed step takes a new lease and reads the manifest
again inside it.

A backup resumed in another process (a conductor taking over a dead one's
job) holds a lease that was dead meanwhile, so a collector C may have passed
V without deferring and may still be deleting. Each of its steps that relies
on chunks takes the lease back and then waits out live collector locks
(`leases.reclaim_lease`), exactly the W then S of a new backup, so from
there on no collector deletes under it; what C deleted before is known only
by looking again: a resumed transfer looks up every chunk's size anew, and
a resumed manifest step checks the sizes of all the chunks it names
(`ChunksCollected` if one is gone). C removes the stale markers it found
only if unchanged at its end, never a lease the resumed run wrote again.

Markers name their owner (host, pid, process start time, run token; see
`leases`). A collection also removes the store's temporary files whose
writer died (the cheap part of ``pieceworks recover``). A marker of a dead
owner on this host is stale at once; one of an owner on another host once
it has not been renewed for the TTL (default 2 minutes; holders renew every
20 s on a thread). A stale marker is ignored and reported, and a collector
removes it: a killed backup, reader or collector blocks nobody for longer.
Ages are measured on the store's clock.

The grace period: listings that lag. The argument above assumes that "a
store lists what was written before the listing starts". A Swift container
listing does not promise it: an object PUT returns once the object servers
hold it, and the container's listing is updated afterwards, asynchronously
(an *async pending* when a container server is busy or down, replayed by
the container-updater every 300 s by default, or later). S3-compatible
services built on such stores (Swift's s3api, multi-site RGW) inherit it.
So V may miss a lease a backup wrote just before, and M a manifest written
just before: the collector then sees the backup's new chunks as referenced
by nothing, and would delete chunks that a running (or just finished)
backup has stored. Hence the rule: a collection never deletes a chunk object
younger than the *grace* (`collect_garbage`'s `grace`, ``pieceworks prune
--grace SECONDS``), its age being the store's clock now minus the chunk's
modification time (`ObjectInfo.modified`, on the same clock; the chunk's
HEAD is read from the object itself, which Swift serves consistently,
never from the listing). A backup's new chunks are written after its lease
and before its manifest, so while the listing lag is shorter than the grace
every chunk a missed lease or manifest protects is itself too young to be
deleted: the next collection, when the listing has caught up, sees the
lease or manifest. The default, `DEFAULT_GRACE` (1 hour: a dozen
container-updater passes, thirty lease TTLs), applies to every store that
does not declare its listings consistent (``consistent_listings = True``,
as `PosixStore` does: a directory listing sees every file renamed into
place before it; a file system whose listings are cached, such as NFS,
wants an explicit grace); there it is 0. What the grace costs: an
unreferenced chunk younger than it (of a backup deleted right after it was
written, or of a failed backup) stays until a later prune, counted in the
report's `chunks_in_grace`. What it does not cover: an *old* chunk that a
backup missed in the listing decided to reuse (no new write, so no young
modification time); the backup's check that its reused chunks are stored
(`unstored_chunks`) runs before, so that case needs a listing that lags
behind a lease by the time between that check and the collection.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from pieceworks.common_algorithms.format.manifest import (
    list_manifests,
    manifest_key,
)
from pieceworks.common_algorithms.gc.leases import (
    BackupInProgress,
    Lease,
    acquire_lease,
    backup_lease,
    lease_key,
    lease_renewed,
    release_lease,
    renew_lease,
)
from pieceworks.common_algorithms.gc.markers import (
    DEFAULT_LEASE_TTL,
    DEFAULT_RENEW_EVERY,
    DEFAULT_WAIT_TIMEOUT,
    GC_LOCK_PREFIX,
    LEASE_PREFIX,
    READ_KIND,
    GCLockTimeout,
    Marker,
    heartbeat,
    put_marker,
    remove_if_unchanged,
    remove_own,
    scan_markers,
    store_clock,
)
from pieceworks.common_algorithms.gc.read_leases import ReadLease, read_lease
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    BackupNotFound,
    IObjectStore,
    ObjectInfo,
    ObjectNotFound,
)
from pieceworks.protocols.owner import Owner

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_RENEW_EVERY",
    "DEFAULT_WAIT_TIMEOUT",
    "BackupInProgress",
    "DeleteReport",
    "GCLockTimeout",
    "GCReport",
    "Lease",
    "Marker",
    "ReadLease",
    "acquire_lease",
    "backup_lease",
    "chunk_id_of",
    "collect_garbage",
    "default_grace",
    "delete_backup",
    "lease_key",
    "lease_renewed",
    "read_lease",
    "release_lease",
    "renew_lease",
]

CHUNK_PREFIX: Final = "chunks/"
#: Seconds: a collection keeps unreferenced chunk objects younger than this (see "The
#: grace period" above), on stores whose listings may lag (not ``consistent_listings``).
DEFAULT_GRACE: Final = 3600.0
_CHUNK_KEY: Final = re.compile(r"chunks/([0-9a-f]{2})/(\1[0-9a-f]{62})")

log = logging.getLogger(__name__)


def chunk_id_of(key: str) -> str | None:
    """The chunk id of `key` if it is a chunk object's key (`chunk_key`'s form), else None.

    ``chunks/ab/ab12...`` (64 lowercase hex digits, the folder their first
    two): anything else under ``chunks/`` (a stray ``chunks/4b`` file, a
    ``README``, another tool's object) is no chunk, and collection never
    removes it.
    """
    found = _CHUNK_KEY.fullmatch(key)
    return found.group(2) if found else None


@dataclass(frozen=True, slots=True)
class GCReport:
    """What a garbage collection found and did.

    If `deferred` (some live lease exists), nothing was deleted; `blockers`
    are those leases, each saying what holds it (a backup being written, or
    an operation reading backups: `Marker.lease_kind`), whose it is, how old
    and whether its owner lives. `deferred_by` are the ids of the backups
    being written among them (write leases); a collection deferred only by
    readers has none. With `dry_run`,
    `chunks_deleted` and `bytes_freed` say what would have been deleted.
    `stale_markers` are the keys of dead leases and locks that were ignored
    (and removed unless `dry_run`). `chunks_in_grace` are unreferenced chunk
    objects kept because they are younger than `grace_seconds` (see "The
    grace period" in the module docstring).
    """

    manifests: int
    chunks_referenced: int
    chunks_deleted: int
    bytes_freed: int
    deferred_by: tuple[str, ...]
    stale_markers: tuple[str, ...]
    dry_run: bool
    blockers: tuple[Marker, ...] = field(default=())
    chunks_in_grace: int = 0
    grace_seconds: float = 0.0

    @property
    def deferred(self) -> bool:
        """Whether live leases (backups written, or backups read) made the collector give up."""
        return bool(self.deferred_by or self.blockers)

    def describe_blockers(self) -> str:
        """One line naming each blocking lease: what holds it, owner, whether alive, age.

        ``backup bk-1 (host h pid 4, alive, renewed 3 s ago)`` for a backup
        being written, ``restore reading backup bk-2 (...)`` for a reader.
        """
        return "; ".join(
            f"{m.describe_holder()} ({m.owner}, {m.state}, renewed {m.age:.0f} s ago)"
            for m in self.blockers
        )

    def to_dict(self, store: str) -> dict[str, Any]:
        """The JSON form printed by ``pieceworks prune --json`` (and under ``forget``'s ``prune``).

        ``deferring_backup_ids`` are `deferred_by` (backups being written),
        ``blocking_leases`` the `blockers` (`Marker.to_dict`: each with its
        ``kind``, ``write`` or ``read``, and for a reader its ``operation``
        and ``backup_ids``); ``deferred_by`` and ``blockers`` are
        their deprecated old names (`pieceworks.common_algorithms.json_fields`).
        """
        return with_deprecated(
            "prune",
            {
                "store": store,
                "dry_run": self.dry_run,
                "deferred": self.deferred,
                "manifests": self.manifests,
                "chunks_referenced": self.chunks_referenced,
                "chunks_deleted": self.chunks_deleted,
                "bytes_freed": self.bytes_freed,
                "chunks_in_grace": self.chunks_in_grace,
                "grace_seconds": self.grace_seconds,
                "deferring_backup_ids": list(self.deferred_by),
                "blocking_leases": [m.to_dict() for m in self.blockers],
                "stale_markers": list(self.stale_markers),
            },
        )


@dataclass(frozen=True, slots=True)
class DeleteReport:
    """A deleted backup and the garbage collection that followed (None if not asked)."""

    backup_id: str
    gc: GCReport | None

    @property
    def chunks_deleted(self) -> int:
        """Chunk objects removed (0 if collection was deferred or skipped)."""
        return self.gc.chunks_deleted if self.gc else 0

    @property
    def bytes_freed(self) -> int:
        """Bytes of the chunk objects removed."""
        return self.gc.bytes_freed if self.gc else 0


# -- garbage collection ----------------------------------------------------------------


def collect_garbage(
    store: IObjectStore,
    *,
    lease_ttl: float | None = None,
    dry_run: bool = False,
    renew_every: float | None = DEFAULT_RENEW_EVERY,
    grace: float | None = None,
) -> GCReport:
    """Delete every chunk object no manifest references, unless a backup is running.

    Only chunk objects at least `grace` seconds old (store clock) are
    deleted; None means `default_grace(store)`. See "The grace period" in
    the module docstring for why; `ValueError` if `grace` is negative.

    Follows the protocol of the module docstring: if any live lease exists
    (a backup being written, or a reader's), nothing is deleted and the
    report's `blockers` name those leases, `deferred_by` the backups being
    written among them (run it again later). Leases and collector locks of dead
    owners are ignored and removed. Raise `CorruptionError` (or
    `UnknownFormatVersion`) if a manifest cannot be read: what it
    references is unknown, so nothing is deleted.
    """
    grace = default_grace(store) if grace is None else grace
    if not grace >= 0:  # also refuses nan
        raise ValueError(f"the grace period must be 0 or more seconds, not {grace!r}")
    owner, started = Owner.current(), time.time()
    lock = f"{GC_LOCK_PREFIX}.{owner.token}"
    put_marker(store, lock, "gc-lock", owner.token, owner, started)
    beat = None
    try:
        failpoint("gc.lock-taken")
        clock = store_clock(store, lock)
        now = clock()
        live, stale = scan_markers(store, LEASE_PREFIX, now, lease_ttl)
        stale_locks = [m for m in scan_markers(store, GC_LOCK_PREFIX, now, lease_ttl)[1]]
        stale_keys = tuple(m.key for m in stale + stale_locks if m.key != lock)
        for m in stale + stale_locks:
            if m.key != lock:
                log.info("ignoring %s: %s", m.describe(), m.reason)
        if live:
            writing = tuple(
                m.key.removeprefix(LEASE_PREFIX) for m in live if m.lease_kind != READ_KIND
            )
            log.info(
                "garbage collection deferred: %s",
                "; ".join(m.describe_holder() for m in live),
            )
            return GCReport(
                0, 0, 0, 0, writing, stale_keys, dry_run, tuple(live), grace_seconds=grace
            )
        beat = heartbeat(
            lambda: put_marker(store, lock, "gc-lock", owner.token, owner, started),
            renew_every,
            lock,
        )
        failpoint("gc.leases-checked")
        manifests = list_manifests(store)
        referenced = {c.digest for m in manifests for c in m.chunks}
        deleted, freed, young = _delete_unreferenced(store, referenced, clock, grace, dry_run)
        if not dry_run:
            for m in stale + stale_locks:  # only as found: a resumed run may have rewritten it
                if m.key != lock:
                    remove_if_unchanged(store, m)
            _sweep_temporary(store)
        failpoint("gc.before-unlock")
        return GCReport(
            len(manifests),
            len(referenced),
            deleted,
            freed,
            (),
            stale_keys,
            dry_run,
            chunks_in_grace=young,
            grace_seconds=grace,
        )
    finally:
        if beat is not None:
            beat.stop()
        remove_own(store, lock, owner.token)


def default_grace(store: IObjectStore) -> float:
    """The grace (seconds) a collection of `store` uses unless told: 0 if the store
    declares ``consistent_listings = True`` (its listings never miss an object written
    before they start), else `DEFAULT_GRACE`."""
    return 0.0 if getattr(store, "consistent_listings", False) is True else DEFAULT_GRACE


def delete_backup(
    store: IObjectStore,
    backup_id: str,
    *,
    collect: bool = True,
    lease_ttl: float | None = None,
) -> DeleteReport:
    """Delete a backup: remove its manifest, then (if `collect`) collect garbage.

    From the moment the manifest is gone the backup no longer exists; its
    chunks that no other backup references are deleted by the collection
    (or a later one, if this one is deferred by a running backup). Raise
    `BackupNotFound` if there is no such backup.
    """
    key = manifest_key(backup_id)
    if _head(store, key) is None:
        raise BackupNotFound(f"no backup {backup_id!r} in the store (no object {key})")
    store.delete(key)
    failpoint("delete.manifest-removed")
    report = collect_garbage(store, lease_ttl=lease_ttl) if collect else None
    return DeleteReport(backup_id, report)


def _delete_unreferenced(
    store: IObjectStore,
    referenced: set[str],
    clock: Callable[[], float],
    grace: float,
    dry_run: bool,
) -> tuple[int, int, int]:
    """Delete the chunk objects not in `referenced` and at least `grace` s old on `clock`.

    Return (chunk objects deleted, their bytes, unreferenced ones kept as too young);
    with `dry_run`, count what would be deleted.
    """
    deleted = freed = young = 0
    for key in store.list(CHUNK_PREFIX):
        chunk_id = chunk_id_of(key)
        if chunk_id is None:
            log.warning("leaving %s alone: not a chunk object's key", key)
            continue
        if chunk_id in referenced:
            continue
        info = _head(store, key)
        if info is None:
            continue
        if clock() - info.modified < grace:  # maybe a backup's the listing hid
            young += 1
            continue
        if not dry_run:
            store.delete(key)
            failpoint("gc.chunk-deleted")
        deleted += 1
        freed += info.size
    if young:
        log.info(
            "kept %d unreferenced chunk object(s) younger than the grace of %g s", young, grace
        )
    return deleted, freed, young


def _sweep_temporary(store: IObjectStore) -> None:
    """Remove temporary files of dead writers, for stores that can tell (`PosixStore`)."""
    sweep = getattr(store, "sweep_temporary", None)
    if callable(sweep):
        for path, left, reason in sweep():
            if left:
                log.info("removed %s: %s", path, reason)


def _head(store: IObjectStore, key: str) -> ObjectInfo | None:
    try:
        return store.head(key)
    except ObjectNotFound:
        return None
