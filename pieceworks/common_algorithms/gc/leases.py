"""Markers in a store that say who is working on it: leases, collector locks, run journals.

Every marker is a small JSON object naming its owner (`pieceworks.protocols.owner.Owner`:
host, pid, process start time, boot id, run token) and when it was written::

    {"kind": "lease", "id": "bk-1", "host": "h", "pid": 42, "proc_start": 123,
     "boot_id": "...", "token": "1f2e3d4c5b6a", "started": 1.0, "renewed": 2.0}

``leases/<backup_id>``
    held by the run writing that backup (see `gc` for the protocol with
    collectors). One run per backup id: a second run finds the first's live
    lease and is refused (`BackupInProgress`) before it changes anything.
``leases/read.<token>``
    a *read lease* (``kind`` ``read``), held by an operation that reads
    backups' chunks after reading their manifests (restore, verify, copy,
    check) from before it reads the first manifest until it has read its
    last chunk (`ReadLease`). Any number may exist at once; ``operation``
    names the operation and ``backup_ids`` the backups it reads (empty: any
    backup of the store). Being under ``leases/``, it defers every
    collector, of this version and of earlier ones, like a backup's lease.
``locks/gc.<token>``
    held by a garbage collector while it runs.
``runs/<token>``
    a run's journal of what it created outside the store (temporary
    snapshots: backend, volume, snapshot), written before each is created and
    updated after each is deleted, so that `pieceworks recover` can delete
    what a killed run left behind, and nothing else.

This module holds backups' leases (`Lease`) and run journals; the marker
machinery they share (format, staleness, renewal, waiting for collectors)
is `pieceworks.common_algorithms.gc.markers`, read leases are
`pieceworks.common_algorithms.gc.read_leases`. The names of both are
re-exported here, where callers have always found them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from pieceworks.common_algorithms.gc.markers import (
    DEFAULT_LEASE_TTL,
    DEFAULT_RENEW_EVERY,
    DEFAULT_WAIT_TIMEOUT,
    GC_LOCK_PREFIX,
    LEASE_PREFIX,
    READ_LEASE_PREFIX,
    RUN_PREFIX,
    GCLockTimeout,
    HeldMarker,
    Marker,
    _body,
    _Heartbeat,
    _put_if_absent,
    _wait_for_collectors,
    marker_body,
    put_marker,
    read_marker,
    remove_own,
    renew_interval,
    scan_markers,
    set_stale_after,
    stale_after,
    store_clock,
    store_now,
)
from pieceworks.common_algorithms.gc.read_leases import (
    ReadLease,
    read_lease,
    read_lease_key,
    release_held_read_leases,
)
from pieceworks.protocols import (
    IObjectStore,
    PieceworksError,
    validate_id,
)
from pieceworks.protocols.owner import Owner

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_RENEW_EVERY",
    "DEFAULT_WAIT_TIMEOUT",
    "GC_LOCK_PREFIX",
    "LEASE_PREFIX",
    "READ_LEASE_PREFIX",
    "RUN_PREFIX",
    "BackupInProgress",
    "ChunksCollected",
    "GCLockTimeout",
    "Lease",
    "Marker",
    "ReadLease",
    "acquire_lease",
    "backup_lease",
    "forget_temporary",
    "lease_key",
    "lease_renewed",
    "own_lease_token",
    "put_marker",
    "read_lease",
    "read_lease_key",
    "read_marker",
    "reclaim_lease",
    "record_temporary",
    "release_held_read_leases",
    "release_lease",
    "remove_own",
    "renew_interval",
    "renew_lease",
    "scan_markers",
    "set_stale_after",
    "stale_after",
    "store_clock",
    "temporary_entries",
]

log = logging.getLogger(__name__)


class BackupInProgress(PieceworksError):
    """Another live run is writing a backup with the same id; nothing of it was touched."""

    reference = "backup-in-progress"
    hint = "wait for the other run to end; if it is dead, `pieceworks recover` removes its lease"


class ChunksCollected(PieceworksError):
    """A resumed run found chunks it had stored removed: its lease was dead meanwhile.

    Raised instead of writing a manifest that would name missing chunks.
    """

    reference = "chunks-collected"
    hint = "back up again: a garbage collection ran while the run that stored them was dead"


def lease_key(backup_id: str) -> str:
    """The key of a backup's lease: ``leases/<backup_id>``."""
    return LEASE_PREFIX + validate_id("backup id", backup_id)


# -- leases ------------------------------------------------------------------------


class Lease(HeldMarker):
    """A backup's lease on a store; see `gc` for the protocol with collectors.

    As a context manager (`backup_lease`): entering writes the lease
    (`BackupInProgress` if another live run holds it), waits for any live
    collector to finish (`GCLockTimeout` after `wait_timeout` seconds) and
    renews the lease every `renew_every` seconds on a thread; leaving stops
    renewing and removes the lease (only if it is still this run's), on
    success and failure. Write the manifest before leaving the block.

    `token` is this run's token (given, e.g. when a resumed run takes its
    lease again, or new). `stale_locks` lists the dead collector locks
    ignored while acquiring and `waited` the seconds spent waiting.
    """

    def __init__(
        self,
        store: IObjectStore,
        backup_id: str,
        *,
        token: str | None = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = 1.0,
        lease_ttl: float | None = None,
        renew_every: float | None = DEFAULT_RENEW_EVERY,
    ) -> None:
        super().__init__(
            store,
            token=token,
            wait_timeout=wait_timeout,
            poll_interval=poll_interval,
            lease_ttl=lease_ttl,
            renew_every=renew_every,
        )
        self.backup_id = backup_id
        self.key = lease_key(backup_id)
        self.waited = 0.0
        self.took_over: Marker | None = None

    def acquire(self) -> Self:
        """Write the lease and wait until no live collector lock remains; return self.

        Raise `BackupInProgress` (and touch nothing) if another live run
        holds the lease; a stale one is taken over (`took_over` says
        whose). On `GCLockTimeout` or any other error this run's lease is
        removed again.
        """
        started = time.monotonic()
        self._claim()
        try:
            self.stale_locks = _wait_for_collectors(
                self.store,
                self.key,
                f"backup {self.backup_id!r}",
                ttl=self.lease_ttl,
                wait_timeout=self.wait_timeout,
                poll_interval=self.poll_interval,
            )
            self.waited = time.monotonic() - started
            return self
        except BaseException:
            remove_own(self.store, self.key, self.token)
            raise

    def _claim(self) -> None:
        data = marker_body("lease", self.backup_id, self.owner, self._started)
        if _put_if_absent(self.store, self.key, data):
            return
        held = read_marker(self.store, self.key, store_now(self.store), self.lease_ttl)
        if held is None:  # released meanwhile
            self.store.put(self.key, data)
            return
        if held.token == self.token:  # our own run, resumed
            put_marker(self.store, self.key, "lease", self.backup_id, self.owner, self._started)
            return
        if not held.stale:
            raise BackupInProgress(
                f"backup {self.backup_id!r} is already being written by another run:"
                f" {held.describe()}; nothing of that run was touched. Wait for it to"
                " finish, or choose another backup id"
            )
        log.warning("taking over the lease of a dead run: %s (%s)", held.describe(), held.reason)
        self.took_over = held
        self.store.put(self.key, data)

    def renew(self) -> None:
        """Re-write the lease (keeping its journal) so that it does not go stale."""
        put_marker(self.store, self.key, "lease", self.backup_id, self.owner, self._started)


def backup_lease(
    store: IObjectStore,
    backup_id: str,
    *,
    token: str | None = None,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = 1.0,
    lease_ttl: float | None = None,
    renew_every: float | None = DEFAULT_RENEW_EVERY,
) -> Lease:
    """A `Lease` for ``with backup_lease(store, backup_id): ...`` (acquired on entry)."""
    return Lease(
        store,
        backup_id,
        token=token,
        wait_timeout=wait_timeout,
        poll_interval=poll_interval,
        lease_ttl=lease_ttl,
        renew_every=renew_every,
    )


def acquire_lease(
    store: IObjectStore,
    backup_id: str,
    *,
    token: str | None = None,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = 1.0,
    lease_ttl: float | None = None,
) -> Lease:
    """Take the lease of `backup_id` now, for callers that release it in another step.

    Nothing renews it: run the long steps inside `lease_renewed`, and call
    `release_lease` with the returned lease's `token` when done. Raises as
    `Lease.acquire`.
    """
    lease = Lease(
        store,
        backup_id,
        token=token,
        wait_timeout=wait_timeout,
        poll_interval=poll_interval,
        lease_ttl=lease_ttl,
        renew_every=None,
    )
    return lease.acquire()


def renew_lease(store: IObjectStore, backup_id: str, token: str) -> None:
    """Re-write the lease of `backup_id` for the run `token`, from this process."""
    put_marker(store, lease_key(backup_id), "lease", backup_id, Owner.current(token), time.time())


def reclaim_lease(
    store: IObjectStore,
    backup_id: str,
    token: str,
    *,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = 1.0,
) -> bool:
    """Make sure this process holds the lease of `backup_id` for the run `token`.

    For a step of a longer operation that took the lease in an earlier step
    (`acquire_lease`). If the lease is this process's already, nothing is
    written and False is returned. Otherwise the step runs where the lease's
    holder did not: a run resumed by another process (a conductor taking
    over a job whose conductor died), or a lease a collector or ``recover``
    removed as stale. While that holder was dead its lease protected
    nothing, so a collector may have started and may still be deleting
    chunks the run wrote or counted on. The lease is then written again
    (this process becomes its owner) and, as `Lease.acquire` does, the step
    waits until no live collector lock remains (`GCLockTimeout` after
    `wait_timeout` seconds); True is returned: the caller must not trust
    that a chunk it found stored before is still there (read its size
    again, or store it again). From here on every collector sees the live
    lease and defers.
    """
    key = lease_key(backup_id)
    me = Owner.current(token)
    held = Owner.from_dict(_body(store, key))
    if held is not None and held.token == token and held.same_process(me):
        return False
    put_marker(store, key, "lease", backup_id, me, time.time())
    _wait_for_collectors(
        store,
        key,
        f"backup {backup_id!r}",
        ttl=stale_after(),
        wait_timeout=wait_timeout,
        poll_interval=poll_interval,
    )
    return True


@contextmanager
def lease_renewed(
    store: IObjectStore,
    backup_id: str,
    token: str,
    every: float = DEFAULT_RENEW_EVERY,
    *,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = 1.0,
) -> Iterator[bool]:
    """Keep the lease of `backup_id` (taken with `acquire_lease`) fresh inside the block.

    For a step of a longer operation that holds the lease across steps: it
    takes the lease back first if this process does not hold it
    (`reclaim_lease`, whose answer the block gets: True when the step was
    resumed elsewhere or the lease had been removed, and chunks found
    stored before may be gone), then re-writes it every `every` seconds, so
    it never looks stale. Raises `GCLockTimeout` as `reclaim_lease`.
    """
    reclaimed = reclaim_lease(
        store, backup_id, token, wait_timeout=wait_timeout, poll_interval=poll_interval
    )
    if not reclaimed:
        renew_lease(store, backup_id, token)
    beat = _Heartbeat(lambda: renew_lease(store, backup_id, token), every, f"lease {backup_id}")
    try:
        yield reclaimed
    finally:
        beat.stop()


def release_lease(store: IObjectStore, backup_id: str, token: str) -> None:
    """Remove the lease of `backup_id` if the run `token` holds it (no error if absent)."""
    remove_own(store, lease_key(backup_id), token)


# -- run journals ---------------------------------------------------------------------


def run_key(token: str) -> str:
    """The key of a run's journal: ``runs/<token>``."""
    return RUN_PREFIX + validate_id("run token", token)


def record_temporary(
    store: IObjectStore, token: str, operation: str, entry: dict[str, str]
) -> None:
    """Add `entry` (``backend``, ``volume_id``, ``snapshot_id``) to the run's journal.

    Call before creating the thing, so a crash right after leaves it named.
    """
    key = run_key(token)
    body = _body(store, key)
    items = list(body.get("temporary", [])) if isinstance(body, dict) else []
    if entry not in items:
        items.append(entry)
    owner = Owner.current(token)
    started = body.get("started", time.time()) if isinstance(body, dict) else time.time()
    store.put(key, marker_body("run", operation, owner, float(started), temporary=items))


def forget_temporary(store: IObjectStore, token: str, entry: dict[str, str]) -> None:
    """Drop `entry` from the run's journal once deleted; the journal goes when empty."""
    key = run_key(token)
    body = _body(store, key)
    if not isinstance(body, dict) or body.get("token") != token:
        return
    items = [e for e in body.get("temporary", []) if e != entry]
    if not items:
        store.delete(key)
        return
    owner = Owner.current(token)
    store.put(
        key,
        marker_body("run", str(body.get("id", "")), owner, float(body["started"]), temporary=items),
    )


def temporary_entries(store: IObjectStore, token: str) -> list[dict[str, str]]:
    """What the run `token` journaled and has not yet deleted (see `record_temporary`)."""
    body = _body(store, run_key(token))
    items = body.get("temporary", []) if isinstance(body, dict) else []
    return [dict(e) for e in items if isinstance(e, dict)]


def own_lease_token(store: IObjectStore, backup_id: str) -> str | None:
    """The token of `backup_id`'s lease if this very process holds it, else None."""
    owner = Owner.from_dict(_body(store, lease_key(backup_id)))
    me = Owner.current("")
    if owner is None or (owner.host, owner.pid, owner.start) != (me.host, me.pid, me.start):
        return None
    return owner.token or None
