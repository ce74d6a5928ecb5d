"""Leases and garbage collection: delete unreferenced chunks, never racing a backup.

Chunks are shared between backups and a backup writes its chunks before its
manifest, so for a while a running backup's chunks (new ones, and old ones
it decided not to send again) are referenced by no manifest. Garbage
collection must not delete them. The protocol uses two kinds of markers,
small JSON objects (kind, id, host, pid, started, renewed) in the store:

``leases/<backup_id>``
    A backup writes its lease before it writes (or decides to reuse) any
    chunk, and before it reads the manifests it deduplicates against. Then
    it looks for live collector locks and, while there is one, waits
    (polling, up to a timeout, then `GCLockTimeout` naming the holder).
    It removes the lease after its manifest is written, or on failure.

``locks/gc.<token>``
    A collector writes its lock (uniquely named, so two collectors never
    remove each other's), then looks for live leases. If there is any, it
    removes its lock and defers, reporting the backups that block it.
    Otherwise it reads every manifest, deletes every ``chunks/`` object
    none references, and removes its lock.

Each side writes its own marker before it looks for the other's, and a
store lists what was written before the listing starts, so whichever looks
second sees the first: a backup and a collector never both proceed. A
backup that started earlier and finished (manifest written, lease removed)
before the collector looked is protected by its manifest, which the
collector reads after looking at leases.

A marker whose last write is older than the TTL (default 6 h) belongs to a
process that died: it is ignored and reported, and a collector removes it.
Ages are measured on the store's clock (an object's modification time
against the one just written), so the hosts' clocks need not agree. A
long-running holder renews its marker (re-writes it) periodically so it
never looks dead: `Lease` and `collect_garbage` do this on a thread.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from pieceworks.common_algorithms.manifest import (
    list_manifests,
    manifest_key,
)
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    BackupNotFound,
    IObjectStore,
    ObjectInfo,
    ObjectNotFound,
    PieceworksError,
    validate_id,
)

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_RENEW_EVERY",
    "DEFAULT_WAIT_TIMEOUT",
    "DeleteReport",
    "GCLockTimeout",
    "GCReport",
    "Lease",
    "Marker",
    "acquire_lease",
    "backup_lease",
    "collect_garbage",
    "delete_backup",
    "lease_key",
    "lease_renewed",
    "release_lease",
    "renew_lease",
]

DEFAULT_LEASE_TTL: Final = 6 * 3600.0
DEFAULT_RENEW_EVERY: Final = 600.0
DEFAULT_WAIT_TIMEOUT: Final = 600.0
LEASE_PREFIX: Final = "leases/"
GC_LOCK_PREFIX: Final = "locks/gc"
CHUNK_PREFIX: Final = "chunks/"

log = logging.getLogger(__name__)


class GCLockTimeout(PieceworksError):
    """A backup waited too long for a garbage collection to finish."""


@dataclass(frozen=True, slots=True)
class Marker:
    """A lease or collector lock found in the store, as a collector or backup saw it."""

    key: str
    owner: str  # "host pid N" from the marker's content, or "unknown"
    age: float  # seconds since its last write, on the store's clock
    stale: bool

    def describe(self) -> str:
        """One line for messages: key, owner and age."""
        state = ", stale" if self.stale else ""
        return f"{self.key} ({self.owner}, written {self.age:.0f} s ago{state})"


@dataclass(frozen=True, slots=True)
class GCReport:
    """What a garbage collection found and did.

    If `deferred_by` is not empty (the ids of backups holding live leases),
    nothing was deleted. With `dry_run`, `chunks_deleted` and `bytes_freed`
    say what would have been deleted. `stale_markers` are the keys of dead
    leases and locks that were ignored (and removed unless `dry_run`).
    """

    manifests: int
    chunks_referenced: int
    chunks_deleted: int
    bytes_freed: int
    deferred_by: tuple[str, ...]
    stale_markers: tuple[str, ...]
    dry_run: bool

    @property
    def deferred(self) -> bool:
        """Whether live backups made the collector give up this time."""
        return bool(self.deferred_by)


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


# -- leases ------------------------------------------------------------------------


def lease_key(backup_id: str) -> str:
    """The key of a backup's lease: ``leases/<backup_id>``."""
    return LEASE_PREFIX + validate_id("backup id", backup_id)


class Lease:
    """A backup's lease on a store; see the module docstring for the protocol.

    As a context manager (`backup_lease`): entering writes the lease, waits
    for any live collector to finish (`GCLockTimeout` after `wait_timeout`
    seconds) and renews the lease every `renew_every` seconds on a thread;
    leaving stops renewing and removes the lease, on success and failure.
    Write the manifest before leaving the block.

    `stale_locks` lists the dead collector locks ignored while acquiring and
    `waited` the seconds spent waiting for live ones.
    """

    def __init__(
        self,
        store: IObjectStore,
        backup_id: str,
        *,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = 1.0,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        renew_every: float | None = DEFAULT_RENEW_EVERY,
    ) -> None:
        self.store, self.backup_id = store, backup_id
        self.key = lease_key(backup_id)
        self.wait_timeout, self.poll_interval = wait_timeout, poll_interval
        self.lease_ttl, self.renew_every = lease_ttl, renew_every
        self.stale_locks: tuple[str, ...] = ()
        self.waited = 0.0
        self._heartbeat: _Heartbeat | None = None
        self._started = time.time()

    def acquire(self) -> Lease:
        """Write the lease and wait until no live collector lock remains; return self.

        On `GCLockTimeout` or any other error the lease is removed again.
        """
        started = time.monotonic()
        _put_marker(self.store, self.key, "lease", self.backup_id, self._started)
        try:
            store_now = _store_clock(self.store, self.key)
            while True:
                live, stale = _scan(self.store, GC_LOCK_PREFIX, store_now(), self.lease_ttl)
                self.stale_locks = tuple(m.key for m in stale)
                self.waited = time.monotonic() - started
                if not live:
                    return self
                if self.waited >= self.wait_timeout:
                    holders = "; ".join(m.describe() for m in live)
                    raise GCLockTimeout(
                        f"backup {self.backup_id!r} waited {self.waited:.1f} s for garbage"
                        f" collection to finish and gave up: held by {holders}. If that"
                        " collector is dead, delete its lock from the store, or it is ignored"
                        f" once older than the lease TTL ({self.lease_ttl:g} s)"
                    )
                time.sleep(max(0.0, min(self.poll_interval, self.wait_timeout - self.waited)))
        except BaseException:
            self.store.delete(self.key)
            raise

    def renew(self) -> None:
        """Re-write the lease so that it does not go stale."""
        _put_marker(self.store, self.key, "lease", self.backup_id, self._started)

    def release(self) -> None:
        """Stop renewing and remove the lease. Idempotent."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        self.store.delete(self.key)

    def __enter__(self) -> Lease:
        self.acquire()
        self._heartbeat = _Heartbeat(self.renew, self.renew_every, self.key)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def backup_lease(
    store: IObjectStore,
    backup_id: str,
    *,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = 1.0,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    renew_every: float | None = DEFAULT_RENEW_EVERY,
) -> Lease:
    """A `Lease` for ``with backup_lease(store, backup_id): ...`` (acquired on entry)."""
    return Lease(
        store,
        backup_id,
        wait_timeout=wait_timeout,
        poll_interval=poll_interval,
        lease_ttl=lease_ttl,
        renew_every=renew_every,
    )


def acquire_lease(
    store: IObjectStore,
    backup_id: str,
    *,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = 1.0,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> Lease:
    """Take the lease of `backup_id` now, for callers that release it in another step.

    Nothing renews it: call `renew_lease` at least once per TTL during a
    longer backup, and `release_lease` when done. Raises as `Lease.acquire`.
    """
    lease = Lease(
        store,
        backup_id,
        wait_timeout=wait_timeout,
        poll_interval=poll_interval,
        lease_ttl=lease_ttl,
        renew_every=None,
    )
    return lease.acquire()


def renew_lease(store: IObjectStore, backup_id: str) -> None:
    """Re-write the lease of `backup_id` so that it does not go stale."""
    _put_marker(store, lease_key(backup_id), "lease", backup_id)


@contextmanager
def lease_renewed(
    store: IObjectStore, backup_id: str, every: float = DEFAULT_RENEW_EVERY
) -> Iterator[None]:
    """Keep the lease of `backup_id` (taken with `acquire_lease`) fresh inside the block.

    For a step of a longer operation that holds the lease across steps: it
    re-writes the lease every `every` seconds, so it never looks stale.
    """
    beat = _Heartbeat(lambda: renew_lease(store, backup_id), every, f"lease {backup_id}")
    try:
        yield
    finally:
        beat.stop()


def release_lease(store: IObjectStore, backup_id: str) -> None:
    """Remove the lease of `backup_id` (no error if it is not there)."""
    store.delete(lease_key(backup_id))


# -- garbage collection ----------------------------------------------------------------


def collect_garbage(
    store: IObjectStore,
    *,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    dry_run: bool = False,
    renew_every: float | None = DEFAULT_RENEW_EVERY,
) -> GCReport:
    """Delete every chunk object no manifest references, unless a backup is running.

    Follows the protocol of the module docstring: if any live lease exists,
    nothing is deleted and the report's `deferred_by` names those backups
    (run it again later). Raise `CorruptionError` (or
    `UnknownFormatVersion`) if a manifest cannot be read: what it references
    is unknown, so nothing is deleted.
    """
    token, started = uuid.uuid4().hex[:16], time.time()
    lock = f"{GC_LOCK_PREFIX}.{token}"
    _put_marker(store, lock, "gc-lock", token, started)
    heartbeat: _Heartbeat | None = None
    try:
        failpoint("gc.lock-taken")
        now = _store_clock(store, lock)()
        live, stale = _scan(store, LEASE_PREFIX, now, lease_ttl)
        stale_locks = [m for m in _scan(store, GC_LOCK_PREFIX, now, lease_ttl)[1] if m.key != lock]
        stale_keys = tuple(m.key for m in stale + stale_locks)
        if live:
            blockers = tuple(m.key.removeprefix(LEASE_PREFIX) for m in live)
            log.info("garbage collection deferred: backups in progress: %s", ", ".join(blockers))
            return GCReport(0, 0, 0, 0, blockers, stale_keys, dry_run)
        heartbeat = _Heartbeat(
            lambda: _put_marker(store, lock, "gc-lock", token, started), renew_every, lock
        )
        failpoint("gc.leases-checked")
        manifests = list_manifests(store)
        referenced = {c.digest for m in manifests for c in m.chunks}
        deleted = freed = 0
        for key in store.list(CHUNK_PREFIX):
            if key.rpartition("/")[2] in referenced:
                continue
            info = _head(store, key)
            if info is None:
                continue
            if not dry_run:
                store.delete(key)
                failpoint("gc.chunk-deleted")
            deleted += 1
            freed += info.size
        if not dry_run:
            for key in stale_keys:
                store.delete(key)
        failpoint("gc.before-unlock")
        return GCReport(len(manifests), len(referenced), deleted, freed, (), stale_keys, dry_run)
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        store.delete(lock)


def delete_backup(
    store: IObjectStore,
    backup_id: str,
    *,
    collect: bool = True,
    lease_ttl: float = DEFAULT_LEASE_TTL,
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


# -- markers ------------------------------------------------------------------------------


def _put_marker(
    store: IObjectStore, key: str, kind: str, ident: str, started: float | None = None
) -> None:
    now = time.time()
    body = {
        "kind": kind,
        "id": ident,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": now if started is None else started,
        "renewed": now,
    }
    store.put(key, json.dumps(body, sort_keys=True).encode())


def _store_clock(store: IObjectStore, key: str) -> Callable[[], float]:
    """A clock on the store's time, anchored on the write time of `key`."""
    info = store.head(key)
    anchor = time.monotonic()
    return lambda: info.modified + (time.monotonic() - anchor)


def _scan(
    store: IObjectStore, prefix: str, now: float, ttl: float
) -> tuple[list[Marker], list[Marker]]:
    """The (live, stale) markers under `prefix`, aged against `now` (store time)."""
    live: list[Marker] = []
    stale: list[Marker] = []
    for key in store.list(prefix):
        info = _head(store, key)
        if info is None:  # removed while we listed
            continue
        age = now - info.modified
        marker = Marker(key, _owner(store, key), age, age > ttl)
        (stale if marker.stale else live).append(marker)
    return live, stale


def _owner(store: IObjectStore, key: str) -> str:
    try:
        body = json.loads(store.get(key))
        return f"host {body['host']} pid {body['pid']}"
    except ObjectNotFound:
        return "gone"
    except (ValueError, KeyError, TypeError):
        return "unknown"


def _head(store: IObjectStore, key: str) -> ObjectInfo | None:
    try:
        return store.head(key)
    except ObjectNotFound:
        return None


class _Heartbeat:
    """Calls `renew` every `every` seconds on a daemon thread until `stop`."""

    def __init__(self, renew: Callable[[], None], every: float | None, what: str) -> None:
        self._renew, self._every, self._what = renew, every, what
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if every is not None and every > 0:
            self._thread = threading.Thread(
                target=self._run, name=f"pieceworks-renew {what}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        assert self._every is not None
        while not self._stop.wait(self._every):
            try:
                self._renew()
            except Exception as exc:  # keep trying: the marker only goes stale after a TTL
                log.warning("cannot renew %s: %s", self._what, exc)

    def stop(self) -> None:
        """Stop renewing; return once no renewal is running."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
