"""The markers pieceworks writes in a store, and how a live one is told from a stale one.

Every marker is a small JSON object naming its owner (`pieceworks.protocols.owner.Owner`:
host, pid, process start time, boot id, run token) and when it was written::

    {"kind": "lease", "id": "bk-1", "host": "h", "pid": 42, "proc_start": 123,
     "boot_id": "...", "token": "1f2e3d4c5b6a", "started": 1.0, "renewed": 2.0}

A marker is *stale* when its owner is known dead (same host: no such
process, or the pid now belongs to a process started at another time, or
another boot), or when an owner on another host has not renewed it for
`stale_after` seconds (`DEFAULT_LEASE_TTL`, 2 minutes, unless configured:
``[leases] stale_after_seconds``, `set_stale_after`). Owners renew on a
thread every `DEFAULT_RENEW_EVERY` seconds, or every quarter of
`stale_after` if that is shorter (`heartbeat`), and record their
`stale_after` in each marker: a reader configured shorter waits for the
owner's, so a live owner is never taken for dead by a host configured
differently. Ages are measured on the store's clock (an object's
modification time against one just written), so hosts' clocks need not
agree. Every cleanup removes only markers with its own run token
(`remove_own`), or stale ones, saying whose and why.

The kinds of marker, their keys and their holders are listed in
`pieceworks.common_algorithms.gc.leases`; read leases are in
`pieceworks.common_algorithms.gc.read_leases`.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from pieceworks.protocols import (
    IObjectStore,
    ObjectInfo,
    ObjectNotFound,
    PieceworksError,
)
from pieceworks.protocols.owner import Liveness, Owner

__all__ = [
    "HeldMarker",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_RENEW_EVERY",
    "DEFAULT_WAIT_TIMEOUT",
    "GCLockTimeout",
    "GC_LOCK_PREFIX",
    "LEASE_PREFIX",
    "Marker",
    "READ_KIND",
    "READ_LEASE_PREFIX",
    "RUN_PREFIX",
    "heartbeat",
    "marker_body",
    "put_marker",
    "read_marker",
    "remove_if_unchanged",
    "remove_own",
    "renew_interval",
    "scan_markers",
    "set_stale_after",
    "stale_after",
    "store_clock",
    "store_now",
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


def store_now(store: IObjectStore, probe: str = "clock") -> float:
    """The store's time now: write and remove a probe object, ``locks/<probe>.<random>``."""
    key = f"locks/{probe}.{secrets.token_hex(8)}"
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


def remove_if_unchanged(store: IObjectStore, marker: Marker) -> bool:
    """Delete the stale `marker` unless it was written again since it was read; whether deleted.

    A collector (or ``recover``) that found a dead run's marker removes it
    later, and meanwhile that run may have been resumed by another process
    (a conductor taking over its job), or a remote owner may have renewed it
    after a pause: it wrote the marker again, and deleting it would leave
    that run unprotected. So the marker is read again and deleted only if
    its body is still the one found stale. (Object stores have no
    conditional delete: between that read and the delete lies one request.)
    """
    if _body(store, marker.key) != marker.body:
        log.info("not removing %s: written again since it was found stale", marker.key)
        return False
    store.delete(marker.key)
    return True


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


class HeldMarker:
    """What every marker this process holds under ``leases/`` shares: a backup's `Lease`
    and a reader's `ReadLease`.

    Its `owner` (this process, running the run `token`), when it started, how
    long `acquire` waits for collectors (`wait_timeout`, polling every
    `poll_interval` seconds, counting markers stale after `lease_ttl`), and,
    as a context manager, renewal every `renew_every` seconds on a thread
    while the block runs and `release` when it ends, on success, failure and
    ``KeyboardInterrupt``. A subclass sets `key` and provides `acquire` and
    `renew`.
    """

    key: str

    def __init__(
        self,
        store: IObjectStore,
        *,
        token: str | None,
        wait_timeout: float,
        poll_interval: float,
        lease_ttl: float | None,
        renew_every: float | None,
    ) -> None:
        self.store = store
        self.owner = Owner.current(token)
        self.wait_timeout, self.poll_interval = wait_timeout, poll_interval
        self.lease_ttl, self.renew_every = _ttl(lease_ttl), renew_every
        self.stale_locks: tuple[str, ...] = ()
        self._heartbeat: _Heartbeat | None = None
        self._started = time.time()

    @property
    def token(self) -> str:
        """This run's token, recorded in the marker."""
        return self.owner.token

    def acquire(self) -> Self:
        """Write the marker and wait for live collectors; return self."""
        raise NotImplementedError

    def renew(self) -> None:
        """Re-write the marker, so that it does not go stale."""
        raise NotImplementedError

    def release(self) -> None:
        """Stop renewing and remove the marker if it is still this run's. Idempotent."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        remove_own(self.store, self.key, self.token)

    def __enter__(self) -> Self:
        self.acquire()
        self._heartbeat = _Heartbeat(self.renew, self.renew_every, self.key)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release; a release that fails is a warning, never the block's outcome.

        The block's own error is what went wrong (a chunk a restore could not
        read): a store failing again while the marker was being removed
        replaced it with "cannot get leases/read.<token>". And a block that
        succeeded has done its work. The marker left behind is no longer
        renewed: collectors on other hosts ignore it after the TTL, those on
        this host once this process has ended (a long-lived conductor keeps
        it live until then), and ``recover`` removes it.
        """
        try:
            self.release()
        except (PieceworksError, OSError) as failed:
            log.warning(
                "could not remove %s (%s); collectors ignore it once this process has"
                " ended (elsewhere: once stale), and `pieceworks recover` removes it",
                self.key,
                failed,
            )
