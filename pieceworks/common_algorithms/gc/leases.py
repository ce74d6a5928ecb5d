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

A marker is *stale* when its owner is known dead (same host: no such
process, or the pid now belongs to a process started at another time, or
another boot), or when an owner on another host has not renewed it for
`stale_after` seconds (`DEFAULT_LEASE_TTL`, 2 minutes, unless configured:
``[leases] stale_after_seconds``, `set_stale_after`). Owners renew on a
thread every `DEFAULT_RENEW_EVERY` seconds, or every quarter of
`stale_after` if that is shorter, and record their `stale_after` in each
marker: a reader configured shorter waits for the owner's, so a live owner
is never taken for dead by a host configured differently. Ages are
measured on the store's clock (an object's modification time against one
just written), so hosts' clocks need not agree. Every cleanup removes
only markers with its own run token (or stale ones, saying whose and
why).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    IObjectStore,
    ObjectInfo,
    ObjectNotFound,
    PieceworksError,
    validate_id,
)
from pieceworks.protocols.owner import Liveness, Owner

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_RENEW_EVERY",
    "DEFAULT_WAIT_TIMEOUT",
    "GC_LOCK_PREFIX",
    "LEASE_PREFIX",
    "READ_LEASE_PREFIX",
    "RUN_PREFIX",
    "BackupInProgress",
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

#: Seconds after its last renewal that a marker of an owner on another host is stale.
DEFAULT_LEASE_TTL: Final = 120.0
#: Seconds between an owner's renewals of its markers.
DEFAULT_RENEW_EVERY: Final = 20.0
#: Seconds a backup waits for a live collector before `GCLockTimeout`.
DEFAULT_WAIT_TIMEOUT: Final = 600.0
LEASE_PREFIX: Final = "leases/"
#: Where read leases live: under `LEASE_PREFIX`, so that every collector sees them.
READ_LEASE_PREFIX: Final = "leases/read."
#: The ``kind`` of a read lease's body (a backup's lease says ``lease``).
READ_KIND: Final = "read"
_settings = {"stale_after": DEFAULT_LEASE_TTL}
GC_LOCK_PREFIX: Final = "locks/gc"
RUN_PREFIX: Final = "runs/"

log = logging.getLogger(__name__)


def stale_after() -> float:
    """Seconds after its last renewal that a marker of an owner on another host is stale.

    `DEFAULT_LEASE_TTL` unless `set_stale_after` changed it (the command
    line does, from ``[leases] stale_after_seconds``).
    """
    return _settings["stale_after"]


def set_stale_after(seconds: float) -> float:
    """Make `stale_after` return `seconds` (in this process); return the value before.

    Raise `ValueError` unless `seconds` is a positive, finite number.
    """
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"stale_after must be a positive number of seconds, not {seconds!r}")
    before, _settings["stale_after"] = _settings["stale_after"], float(seconds)
    return before


def renew_interval(every: float = DEFAULT_RENEW_EVERY) -> float:
    """Seconds between renewals: `every`, or a quarter of `stale_after` if that is shorter."""
    return min(every, stale_after() / 4)


def _ttl(given: float | None) -> float:
    return stale_after() if given is None else given


class GCLockTimeout(PieceworksError):
    """A backup, or a reader taking its read lease, waited too long for a live garbage
    collection to finish."""

    reference = "gc-lock-timeout"
    hint = (
        "run the command again once the collection has ended; if its owner is dead,"
        " `pieceworks recover` removes its lock"
    )


class BackupInProgress(PieceworksError):
    """Another live run is writing a backup with the same id; nothing of it was touched."""

    reference = "backup-in-progress"
    hint = "wait for the other run to end; if it is dead, `pieceworks recover` removes its lease"


@dataclass(frozen=True, slots=True)
class Marker:
    """A lease, lock or journal found in the store, as seen from here.

    `owner` is ``host H pid P`` (or ``unknown``), `state` one of
    ``alive`` (same host, runs), ``dead`` (same host, gone), ``remote``
    (another host, renewed within the TTL), ``silent`` (another host or no
    owner recorded, not renewed within the TTL); `age` seconds since its
    last write on the store's clock; `stale` whether it may be removed,
    `reason` why (one phrase); `token` the owner's run token.
    """

    key: str
    owner: str
    age: float
    stale: bool
    state: str = "unknown"
    reason: str = ""
    token: str = ""
    body: Any = None

    def describe(self) -> str:
        """One line for messages: key, owner, whether it lives, age."""
        return f"{self.key} ({self.owner}, {self.state}, written {self.age:.0f} s ago)"

    @property
    def lease_kind(self) -> str:
        """For a lease: ``read`` (a `ReadLease`) or ``write`` (a run writing chunks)."""
        body = self.body if isinstance(self.body, dict) else {}
        return READ_KIND if body.get("kind") == READ_KIND else "write"

    @property
    def operation(self) -> str | None:
        """For a read lease: the operation reading (``restore``, ``verify``...); else None."""
        if self.lease_kind != READ_KIND:
            return None
        return str(self.body.get("operation") or "read")

    @property
    def backup_ids(self) -> tuple[str, ...]:
        """For a lease: the backups it is about.

        A write lease: the id it is named after (a backup's, or a
        replication's operation id). A read lease: the backups read; empty
        when the reader may read any backup of the store (``check``).
        """
        if self.lease_kind != READ_KIND:
            return (self.key.removeprefix(LEASE_PREFIX),)
        ids = self.body.get("backup_ids")
        return tuple(str(i) for i in ids) if isinstance(ids, list) else ()

    def describe_holder(self) -> str:
        """What holds this lease, for messages: ``backup ID`` or ``restore reading backup ID``."""
        if self.lease_kind != READ_KIND:
            return f"backup {self.key.removeprefix(LEASE_PREFIX)}"
        ids = self.backup_ids
        what = f"backup {', '.join(ids)}" if ids else "the store's backups"
        return f"{self.operation} reading {what}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form: key, kind, operation, backup_ids, owner, state, stale, reason, age_seconds.

        ``kind``, ``operation`` and ``backup_ids`` are the lease's
        (`lease_kind`, `operation`, `backup_ids`): meaningful for leases only.
        """
        return {
            "key": self.key,
            "kind": self.lease_kind,
            "operation": self.operation,
            "backup_ids": list(self.backup_ids),
            "owner": self.owner,
            "state": self.state,
            "stale": self.stale,
            "reason": self.reason,
            "age_seconds": round(self.age, 1),
        }


def lease_key(backup_id: str) -> str:
    """The key of a backup's lease: ``leases/<backup_id>``."""
    return LEASE_PREFIX + validate_id("backup id", backup_id)


def marker_body(kind: str, ident: str, owner: Owner, started: float, **extra: Any) -> bytes:
    """The JSON bytes of a marker of `kind` for `ident`, owned by `owner`."""
    body = {
        "kind": kind,
        "id": ident,
        **owner.to_dict(),
        "started": started,
        "renewed": time.time(),
        "stale_after": stale_after(),
        **extra,
    }
    return json.dumps(body, sort_keys=True).encode()


def put_marker(
    store: IObjectStore, key: str, kind: str, ident: str, owner: Owner, started: float
) -> None:
    """Write (or re-write) a marker; extra fields already in it (a journal) are kept."""
    extra: dict[str, Any] = {}
    body = _body(store, key)
    if isinstance(body, dict) and body.get("token") == owner.token:
        extra = {k: v for k, v in body.items() if k == "temporary"}
    store.put(key, marker_body(kind, ident, owner, started, **extra))


def _body(store: IObjectStore, key: str) -> Any:
    try:
        return json.loads(store.get(key))
    except ObjectNotFound:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}


def _put_if_absent(store: IObjectStore, key: str, data: bytes) -> bool:
    put_if_absent = getattr(store, "put_if_absent", None)
    if callable(put_if_absent):
        return bool(put_if_absent(key, data))
    try:
        store.head(key)
    except ObjectNotFound:
        store.put(key, data)
        return True
    return False


def store_clock(store: IObjectStore, key: str) -> Callable[[], float]:
    """A clock on the store's time, anchored on the write time of `key` (which must exist)."""
    info = store.head(key)
    anchor = time.monotonic()
    return lambda: info.modified + (time.monotonic() - anchor)


def _probe_now(store: IObjectStore) -> float:
    """The store's time now: write and remove a probe object."""
    key = f"locks/clock.{secrets.token_hex(8)}"
    store.put(key, b"{}")
    try:
        return store.head(key).modified
    finally:
        store.delete(key)


def read_marker(
    store: IObjectStore, key: str, now: float, ttl: float | None = None
) -> Marker | None:
    """The marker at `key` aged against `now` (store time); None if there is none.

    `ttl` is the staleness of owners on other hosts (default: `stale_after`).
    """
    ttl = _ttl(ttl)
    info = _head(store, key)
    if info is None:
        return None
    body = _body(store, key)
    if body is None:
        return None
    age = now - info.modified
    owner = Owner.from_dict(body)
    if owner is None:
        silent = age > ttl
        return Marker(
            key,
            "unknown",
            age,
            silent,
            "silent" if silent else "unknown",
            f"no owner recorded, not written for {age:.0f} s (TTL {ttl:g} s)"
            if silent
            else f"no owner recorded, written {age:.0f} s ago (TTL {ttl:g} s)",
            "",
            body,
        )
    liveness = owner.liveness()
    if liveness is Liveness.ALIVE:
        return Marker(key, owner.describe(), age, False, "alive", "owner runs", owner.token, body)
    if liveness is Liveness.DEAD:
        return Marker(
            key, owner.describe(), age, True, "dead", "owner died (same host)", owner.token, body
        )
    ttl = max(ttl, _promised(body))
    if age > ttl:
        reason = f"owner on another host silent for {age:.0f} s (TTL {ttl:g} s)"
        return Marker(key, owner.describe(), age, True, "silent", reason, owner.token, body)
    reason = f"owner on another host renewed {age:.0f} s ago (TTL {ttl:g} s)"
    return Marker(key, owner.describe(), age, False, "remote", reason, owner.token, body)


def _promised(body: Any) -> float:
    """The staleness the marker's owner renews within (``stale_after``; 0 if not recorded).

    An owner configured with a longer ``stale_after`` renews less often: a
    reader configured shorter waits for the owner's, so a live owner is
    never taken for dead.
    """
    value = body.get("stale_after") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return 0.0 if math.isnan(value) else min(max(float(value), 0.0), 86400.0)


def scan_markers(
    store: IObjectStore, prefix: str, now: float, ttl: float | None = None
) -> tuple[list[Marker], list[Marker]]:
    """The (live, stale) markers under `prefix`, aged against `now` (store time).

    `ttl` as for `read_marker`.
    """
    ttl = _ttl(ttl)
    live: list[Marker] = []
    stale: list[Marker] = []
    for key in store.list(prefix):
        marker = read_marker(store, key, now, ttl)
        if marker is not None:
            (stale if marker.stale else live).append(marker)
    return live, stale


def remove_own(store: IObjectStore, key: str, token: str) -> bool:
    """Delete the marker at `key` if its run token is `token`; return whether it was ours.

    A marker another run owns is left alone (and logged); a missing one is
    no error.
    """
    body = _body(store, key)
    if body is None:
        return True
    if isinstance(body, dict) and body.get("token") == token:
        store.delete(key)
        return True
    owner = Owner.from_dict(body)
    log.warning(
        "not removing %s: it belongs to another run (%s)",
        key,
        owner.describe() if owner else "unknown owner",
    )
    return False


# -- leases ------------------------------------------------------------------------


class Lease:
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
        self.store, self.backup_id = store, backup_id
        self.key = lease_key(backup_id)
        self.owner = Owner.current(token)
        self.wait_timeout, self.poll_interval = wait_timeout, poll_interval
        self.lease_ttl, self.renew_every = _ttl(lease_ttl), renew_every
        self.stale_locks: tuple[str, ...] = ()
        self.waited = 0.0
        self.took_over: Marker | None = None
        self._heartbeat: _Heartbeat | None = None
        self._started = time.time()

    @property
    def token(self) -> str:
        """This run's token, recorded in the lease."""
        return self.owner.token

    def acquire(self) -> Lease:
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
        held = read_marker(self.store, self.key, _probe_now(self.store), self.lease_ttl)
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

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still this run's. Idempotent."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        remove_own(self.store, self.key, self.token)

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


def _wait_for_collectors(
    store: IObjectStore,
    key: str,
    what: str,
    *,
    ttl: float,
    wait_timeout: float,
    poll_interval: float,
) -> tuple[str, ...]:
    """Wait until no live collector lock remains; the keys of the stale ones ignored.

    `key` is the caller's own marker, just written (its write time anchors
    the store's clock); `what` names the caller in the warning logged when
    it starts waiting and in `GCLockTimeout`, raised after `wait_timeout`
    seconds.
    """
    started = time.monotonic()
    store_now = store_clock(store, key)
    logged = False
    while True:
        live, stale = scan_markers(store, GC_LOCK_PREFIX, store_now(), ttl)
        waited = time.monotonic() - started
        if not live:
            return tuple(m.key for m in stale)
        holders = "; ".join(m.describe() for m in live)
        if waited >= wait_timeout:
            raise GCLockTimeout(
                f"{what} waited {waited:.1f} s for garbage collection to finish and gave up:"
                f" held by {holders}. A dead collector on this host is ignored at once, one on"
                f" another host once silent for {ttl:g} s; `pieceworks recover` removes both"
            )
        if not logged:  # a user should not take the wait for a hang
            log.warning("%s waits for a garbage collection to finish: %s", what, holders)
            logged = True
        time.sleep(max(0.0, min(poll_interval, wait_timeout - waited)))


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


@contextmanager
def lease_renewed(
    store: IObjectStore, backup_id: str, token: str, every: float = DEFAULT_RENEW_EVERY
) -> Iterator[None]:
    """Keep the lease of `backup_id` (taken with `acquire_lease`) fresh inside the block.

    For a step of a longer operation that holds the lease across steps: it
    re-writes the lease at once (this process becomes its owner, as a
    resumed run's does) and every `every` seconds, so it never looks stale.
    """
    renew_lease(store, backup_id, token)
    beat = _Heartbeat(lambda: renew_lease(store, backup_id, token), every, f"lease {backup_id}")
    try:
        yield
    finally:
        beat.stop()


def release_lease(store: IObjectStore, backup_id: str, token: str) -> None:
    """Remove the lease of `backup_id` if the run `token` holds it (no error if absent)."""
    remove_own(store, lease_key(backup_id), token)


# -- read leases ---------------------------------------------------------------------


def read_lease_key(token: str) -> str:
    """The key of a read lease: ``leases/read.<token>``.

    Beside backups' leases (``leases/<backup_id>``), so that every collector
    lists it; what it is is told by its body's ``kind`` (``read``), never
    by its name.
    """
    return READ_LEASE_PREFIX + validate_id("run token", token)


class ReadLease:
    """A reader's lease on a store: a collector defers while it lives.

    Taken by every operation that reads backups' chunks after reading their
    manifests, *before* it reads the first manifest, and held until it has
    read its last chunk; see `gc.collection` for why that order makes a
    concurrent ``delete`` or ``prune`` defer instead of deleting chunks
    under the reader. Its key is ``leases/read.<token>`` (`read_lease_key`),
    its body a marker of kind ``read`` with ``operation`` (what reads:
    ``restore``, ``verify``, ``copy``, ``check``) and ``backup_ids`` (the
    backups read; empty: any of the store's). Readers never exclude one
    another.

    As a context manager (`read_lease`): entering writes the lease, waits
    for any live collector to finish (`GCLockTimeout` after `wait_timeout`
    seconds, the lease removed again) and renews the lease every
    `renew_every` seconds on a thread, as a backup's lease is renewed;
    leaving stops renewing and removes it, on success, failure and
    ``KeyboardInterrupt`` (Ctrl-C, and SIGTERM where the command line turns
    it into one). A lease still held when the interpreter exits is removed
    then (`release_held_read_leases`); one of a killed process is stale at
    once on its host and after `stale_after` seconds elsewhere, so it blocks
    no collection for longer.
    """

    def __init__(
        self,
        store: IObjectStore,
        operation: str,
        backup_ids: Iterable[str] = (),
        *,
        token: str | None = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = 1.0,
        lease_ttl: float | None = None,
        renew_every: float | None = DEFAULT_RENEW_EVERY,
    ) -> None:
        self.store, self.operation = store, operation
        self.backup_ids = tuple(validate_id("backup id", b) for b in backup_ids)
        self.owner = Owner.current(token)
        self.key = read_lease_key(self.owner.token)
        self.wait_timeout, self.poll_interval = wait_timeout, poll_interval
        self.lease_ttl, self.renew_every = _ttl(lease_ttl), renew_every
        self.stale_locks: tuple[str, ...] = ()
        self._heartbeat: _Heartbeat | None = None
        self._started = time.time()

    @property
    def token(self) -> str:
        """This reader's run token: the last part of its key."""
        return self.owner.token

    def _what(self) -> str:
        ids = ", ".join(self.backup_ids) or "the store's backups"
        return f"{self.operation} of {ids}"

    def renew(self) -> None:
        """Write (or re-write) the lease, so that it does not go stale."""
        self.store.put(
            self.key,
            marker_body(
                READ_KIND,
                self.token,
                self.owner,
                self._started,
                operation=self.operation,
                backup_ids=list(self.backup_ids),
            ),
        )

    def acquire(self) -> ReadLease:
        """Write the lease, then wait until no live collector lock remains; return self.

        Raise `GCLockTimeout` after `wait_timeout` seconds; on that or any
        other error (Ctrl-C included) the lease is removed again.
        """
        _held.add(self)
        try:
            self.renew()
            failpoint("read.lease-written")
            self.stale_locks = _wait_for_collectors(
                self.store,
                self.key,
                self._what(),
                ttl=self.lease_ttl,
                wait_timeout=self.wait_timeout,
                poll_interval=self.poll_interval,
            )
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still this reader's. Idempotent."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        _held.discard(self)
        remove_own(self.store, self.key, self.token)

    def __enter__(self) -> ReadLease:
        self.acquire()
        self._heartbeat = _Heartbeat(self.renew, self.renew_every, self.key)
        failpoint("read.lease-taken")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def read_lease(
    store: IObjectStore,
    operation: str,
    backup_ids: Iterable[str] = (),
    *,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = 1.0,
    lease_ttl: float | None = None,
    renew_every: float | None = DEFAULT_RENEW_EVERY,
) -> ReadLease:
    """A `ReadLease` for ``with read_lease(store, "restore", [backup_id]): ...``.

    Enter it before reading the first manifest; read every chunk inside.
    `backup_ids` are validated ids (`InvalidName` otherwise).
    """
    return ReadLease(
        store,
        operation,
        backup_ids,
        wait_timeout=wait_timeout,
        poll_interval=poll_interval,
        lease_ttl=lease_ttl,
        renew_every=renew_every,
    )


#: Read leases this process holds (removed at exit if still held).
_held: set[ReadLease] = set()


def release_held_read_leases() -> None:
    """Remove every read lease this process still holds (at interpreter exit).

    A reader running on an engine's thread when Ctrl-C ends the main thread
    does not leave its lease to go stale: the process is ending, nothing
    reads any more.
    """
    for lease in list(_held):
        try:
            lease.release()
        except Exception as exc:  # the lease goes stale with its owner anyway
            log.warning("cannot remove read lease %s: %s", lease.key, exc)


atexit.register(release_held_read_leases)


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


def _head(store: IObjectStore, key: str) -> ObjectInfo | None:
    try:
        return store.head(key)
    except ObjectNotFound:
        return None


class _Heartbeat:
    """Calls `renew` every `every` seconds on a daemon thread until `stop`."""

    def __init__(self, renew: Callable[[], None], every: float | None, what: str) -> None:
        if every is not None and every > 0:
            every = renew_interval(every)  # never so rare that a reader finds it stale
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


def heartbeat(renew: Callable[[], None], every: float | None, what: str) -> _Heartbeat:
    """Start calling `renew` every `every` seconds on a thread; ``.stop()`` it."""
    return _Heartbeat(renew, every, what)
