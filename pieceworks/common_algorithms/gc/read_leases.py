"""Read leases: an operation that reads backups' chunks defers every collector meanwhile.

``leases/read.<token>`` (``kind`` ``read``) is held by an operation that
reads backups' chunks after reading their manifests (restore, verify, copy,
check) from before it reads the first manifest until it has read its last
chunk (`ReadLease`, `read_lease`). Any number may exist at once;
``operation`` names the operation and ``backup_ids`` the backups it reads
(empty: any backup of the store). Being under ``leases/``, it defers every
collector, of this version and of earlier ones, like a backup's lease (the
protocol and the argument that no interleaving loses a chunk a reader needs
are in `pieceworks.common_algorithms.gc.collection`). Staleness and renewal
are every marker's (`pieceworks.common_algorithms.gc.markers`).
"""

from __future__ import annotations

import atexit
import errno
import logging
from collections.abc import Iterable
from typing import Self

from pieceworks.common_algorithms.gc.markers import (
    DEFAULT_RENEW_EVERY,
    DEFAULT_WAIT_TIMEOUT,
    READ_KIND,
    READ_LEASE_PREFIX,
    HeldMarker,
    _wait_for_collectors,
    marker_body,
)
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    IObjectStore,
    PieceworksError,
    validate_id,
)

__all__ = [
    "ReadLease",
    "read_lease",
    "read_lease_key",
    "release_held_read_leases",
]

log = logging.getLogger(__name__)


# -- read leases ---------------------------------------------------------------------


def read_lease_key(token: str) -> str:
    """The key of a read lease: ``leases/read.<token>``.

    Beside backups' leases (``leases/<backup_id>``), so that every collector
    lists it; what it is is told by its body's ``kind`` (``read``), never
    by its name.
    """
    return READ_LEASE_PREFIX + validate_id("run token", token)


class ReadLease(HeldMarker):
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

    A store on a read-only file system (a backup disk mounted read-only, one
    the kernel remounted read-only after errors) takes no lease: the reader
    goes on without one (`unleased`), with a warning. Nothing can collect
    garbage through that mount; a collector writing the same store through
    another mount is not deferred, and the worst it does is make a chunk
    missing, which the reader reports (never wrong data).
    """

    #: Whether the store could not take the lease because it is read-only.
    unleased = False

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
        self.backup_ids = tuple(validate_id("backup id", b) for b in backup_ids)
        super().__init__(
            store,
            token=token,
            wait_timeout=wait_timeout,
            poll_interval=poll_interval,
            lease_ttl=lease_ttl,
            renew_every=renew_every,
        )
        self.operation = operation
        self.key = read_lease_key(self.owner.token)

    def _what(self) -> str:
        ids = ", ".join(self.backup_ids) or "the store's backups"
        return f"{self.operation} of {ids}"

    def renew(self) -> None:
        """Write (or re-write) the lease, so that it does not go stale."""
        if self.unleased:
            return
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

    def acquire(self) -> Self:
        """Write the lease, then wait until no live collector lock remains; return self.

        Raise `GCLockTimeout` after `wait_timeout` seconds; on that or any
        other error (Ctrl-C included) the lease is removed again.
        """
        _held.add(self)
        try:
            try:
                self.renew()
            except PieceworksError as exc:
                if not _read_only(exc):
                    raise
                log.warning(
                    "the store is on a read-only file system: %s reads it without a read"
                    " lease (no garbage collection can run through this mount)",
                    self._what(),
                )
                self.unleased = True
                _held.discard(self)
                return self
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
        _held.discard(self)
        if self.unleased:
            return
        super().release()

    def __enter__(self) -> Self:
        super().__enter__()
        failpoint("read.lease-taken")
        return self


def _read_only(exc: BaseException) -> bool:
    """Whether `exc` was caused by a read-only file system (``EROFS``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.EROFS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
