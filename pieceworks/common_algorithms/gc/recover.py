"""Recover after crashes: remove what dead runs left behind, and only that.

    outcome = recover([store], {"lab": backend})
    for item in outcome.items: print(item.action, item.kind, item.name, item.reason)

What a killed run can leave, and how each is found to be dead (see `leases`
and `pieceworks.protocols.owner`):

=====================  ===================================================
leftover               removed when
=====================  ===================================================
``leases/<id>``        its owner is dead (same host) or silent (TTL)
``locks/gc.<token>``   likewise
``runs/<token>``       likewise (or, for a remote owner, no live lease of
                       that run remains); first every temporary snapshot
                       it names is deleted on its backend
``<journal>/<token>``  its owner (always on this host) is dead; first
``.json``              every temporary snapshot or file it names is
                       deleted (`LocalJournal`: runs that write to no
                       store, restores to a file)
``.tmp-*`` in a store  its writing process is dead (the name says which)
backend temporaries    ``.incoming`` copies and snapshot copies of dead
                       writers (drivers with ``sweep_temporary``)
=====================  ===================================================

A snapshot on a backend that is not configured here is kept, and so is its
journal, with that reason. Chunks no manifest references are left to `gc`
(``pieceworks recover`` then ``pieceworks gc``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.gc.journal import TEMP_FILE_MARK, LocalJournal, remove
from pieceworks.common_algorithms.gc.leases import (
    GC_LOCK_PREFIX,
    LEASE_PREFIX,
    RUN_PREFIX,
    Marker,
    read_marker,
    scan_markers,
    stale_after,
)
from pieceworks.common_algorithms.gc.markers import remove_if_unchanged, store_now
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    IObjectStore,
    ISnapshot,
    NotFound,
    ObjectNotFound,
    PieceworksError,
    SnapshotRef,
)
from pieceworks.protocols.os_errors import os_error_text

__all__ = ["LocalJournal", "RecoverItem", "RecoverOutcome", "recover"]

log = logging.getLogger(__name__)

#: `RecoverItem.where` of a local file outside every store and backend (the
#: temporary file of a restore to a file): not a name that a store or backend
#: could have (names are ids: no spaces).
THIS_HOST: Final = "this host"


@dataclass(frozen=True, slots=True)
class RecoverItem:
    """One thing `recover` looked at.

    `kind`: ``lease``, ``gc-lock``, ``run-journal``, ``temporary-snapshot``
    or ``temporary-file``; `where`: the store or backend name, the journal's
    folder, or `THIS_HOST` for a local temporary file; `name`: key,
    snapshot or path; `action`: ``removed``, ``would remove``, ``kept`` or
    ``failed``; `reason`: why, in a few words.
    """

    kind: str
    where: str
    name: str
    action: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON form: kind, where, name, action, reason."""
        return {
            "kind": self.kind,
            "where": self.where,
            "name": self.name,
            "action": self.action,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class RecoverOutcome:
    """Everything `recover` removed or kept, and whether it was a dry run."""

    items: tuple[RecoverItem, ...]
    dry_run: bool

    @property
    def removed(self) -> int:
        """How many things were (or, in a dry run, would be) removed."""
        return sum(1 for i in self.items if i.action in ("removed", "would remove"))

    @property
    def kept(self) -> int:
        """How many things were kept (a live owner, or a backend not configured)."""
        return sum(1 for i in self.items if i.action == "kept")

    @property
    def failed(self) -> int:
        """How many removals failed (each item says why)."""
        return sum(1 for i in self.items if i.action == "failed")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``pieceworks recover --json``.

        ``items_removed``, ``items_kept``, ``items_failed`` count `items`;
        ``removed``, ``kept`` and ``failed`` are their deprecated old names
        (`pieceworks.common_algorithms.json_fields`).
        """
        return with_deprecated(
            "recover",
            {
                "dry_run": self.dry_run,
                "items_removed": self.removed,
                "items_kept": self.kept,
                "items_failed": self.failed,
                "items": [i.to_dict() for i in self.items],
            },
        )


class _Recovery:
    def __init__(self, backends: Mapping[str, Backend], dry_run: bool, lease_ttl: float) -> None:
        self.backends, self.dry_run, self.ttl = backends, dry_run, lease_ttl
        self.items: list[RecoverItem] = []
        self.verb = "would remove" if dry_run else "removed"

    def note(self, kind: str, where: str, name: str, action: str, reason: str) -> None:
        self.items.append(RecoverItem(kind, where, name, action, reason))
        log.info("%s %s %s in %s: %s", action, kind, name, where, reason)

    def attempt(
        self, kind: str, where: str, name: str, reason: str, remove: Callable[[], bool | None]
    ) -> bool:
        """Remove one thing (unless a dry run), noting the outcome; whether it is gone.

        `remove` returning False means it found the thing no longer stale
        (written again meanwhile, `remove_if_unchanged`): it is kept.
        """
        if not self.dry_run:
            try:
                if remove() is False:
                    self.note(kind, where, name, "kept", "written again since it was found stale")
                    return False
            except (NotFound, ObjectNotFound):
                pass  # already gone: that is what we wanted
            except (PieceworksError, OSError) as exc:
                self.note(kind, where, name, "failed", f"{reason}; cannot remove: {_text(exc)}")
                return False
            failpoint("recover.item-removed")
        self.note(kind, where, name, self.verb, reason)
        return True

    def store(self, store: Store) -> None:
        objects = store.objects
        now = store_now(objects, "recover-clock")
        live_leases = {m.token for m in scan_markers(objects, LEASE_PREFIX, now, self.ttl)[0]}
        for key in list(objects.list(RUN_PREFIX)):
            marker = read_marker(objects, key, now, self.ttl)
            if marker is not None:
                self.journal(store, marker, live_leases)
        for prefix, kind in ((LEASE_PREFIX, "lease"), (GC_LOCK_PREFIX, "gc-lock")):
            live, stale = scan_markers(objects, prefix, now, self.ttl)
            for m in stale:  # unless written again meanwhile (a job resumed elsewhere)
                self.attempt(kind, store.name, m.key, m.reason, _marker_remover(objects, m))
            for m in live:
                self.note(kind, store.name, m.key, "kept", f"{m.reason} ({m.owner})")
        self.sweep(store.name, objects)

    def journal(self, store: Store, marker: Marker, live_leases: set[str]) -> None:
        if marker.stale and marker.state == "silent" and marker.token in live_leases:
            # A remote run renews its lease, not its journal: the lease says it lives.
            self.note("run-journal", store.name, marker.key, "kept", "its run's lease is live")
            return
        if not marker.stale:
            self.note("run-journal", store.name, marker.key, "kept", marker.reason)
            return
        entries = marker.body.get("temporary", []) if isinstance(marker.body, dict) else []
        whole = True
        for entry in entries:
            whole &= self.snapshot(entry, marker.reason)
        if whole:
            reason = f"{marker.reason}; every temporary it named is gone"
            remove = _marker_remover(store.objects, marker)
            self.attempt("run-journal", store.name, marker.key, reason, remove)
        else:
            self.note(
                "run-journal",
                store.name,
                marker.key,
                "kept",
                "it names temporaries that could not be removed here",
            )

    def snapshot(self, entry: Any, why: str) -> bool:
        if not isinstance(entry, dict) or not {"backend", "volume_id", "snapshot_id"} <= set(entry):
            return True  # nothing usable to remove
        name = f"{entry['volume_id']}@{entry['snapshot_id']}"
        backend = self.backends.get(str(entry["backend"]))
        if backend is None or not backend.provides(ISnapshot):
            self.note(
                "temporary-snapshot",
                str(entry["backend"]),
                name,
                "kept",
                "its backend is not configured here (or cannot delete snapshots)",
            )
            return False
        ref = SnapshotRef(str(entry["volume_id"]), str(entry["snapshot_id"]))
        driver = backend.use(ISnapshot)
        return self.attempt(
            "temporary-snapshot",
            backend.name,
            name,
            f"taken by a run whose {why}",
            lambda: driver.delete_snapshot(ref),
        )

    def temp_file(self, entry: dict[str, str], why: str) -> bool:
        """Remove a journaled temporary file (a restore to a file); whether it is gone.

        Only an absolute path whose name is a pieceworks temporary
        (`TEMP_FILE_MARK`) is removed: a journal never makes recover delete
        anything else.
        """
        path = str(entry["file"])
        if not os.path.isabs(path) or TEMP_FILE_MARK not in os.path.basename(path):
            self.note("temporary-file", THIS_HOST, path, "kept", "not a pieceworks temporary name")
            return False
        if not os.path.lexists(path):
            return True
        return self.attempt(
            "temporary-file",
            THIS_HOST,
            path,
            f"written by a run whose {why}",
            _unlinker(Path(path)),
        )

    def local(self, journal: LocalJournal) -> None:
        where = str(journal.directory)
        for found in journal.scan():
            dead, why = found.state()
            name = found.path.name
            if not dead:
                self.note("run-journal", where, name, "kept", why)
                continue
            whole = True
            for entry in found.temporary:
                whole &= (
                    self.temp_file(entry, why) if "file" in entry else self.snapshot(entry, why)
                )
            if whole:
                reason = f"{why}; every temporary it named is gone"
                self.attempt("run-journal", where, name, reason, _unlinker(found.path))
            else:
                self.note(
                    "run-journal",
                    where,
                    name,
                    "kept",
                    "it names temporaries that could not be removed here",
                )
        for path, left, reason in journal.stray_files():
            if left:
                self.attempt("temporary-file", where, path.name, reason, _unlinker(path))
            else:
                self.note("temporary-file", where, path.name, "kept", reason)

    def sweep(self, where: str, thing: object) -> None:
        sweep = getattr(thing, "sweep_temporary", None)
        if not callable(sweep):
            return
        try:
            found = sweep(dry_run=self.dry_run)
        except (PieceworksError, OSError) as exc:
            self.note("temporary-file", where, "*", "failed", f"cannot look for them: {_text(exc)}")
            return
        for path, left, reason in found:
            self.note("temporary-file", where, str(path), self.verb if left else "kept", reason)


def _unlinker(path: Path) -> Callable[[], None]:
    return lambda: remove(path)


def _marker_remover(objects: IObjectStore, marker: Marker) -> Callable[[], bool]:
    return lambda: remove_if_unchanged(objects, marker)


def recover(
    stores: Sequence[Store],
    backends: Mapping[str, Backend],
    *,
    dry_run: bool = False,
    lease_ttl: float | None = None,
    journals: Sequence[LocalJournal] = (),
) -> RecoverOutcome:
    """Remove what dead runs left in `stores`, `journals` and on `backends` (see the module).

    `backends` maps backend names (as journals record them) to backends;
    `journals` are this host's journals of runs without a store;
    `lease_ttl` is the staleness of owners on other hosts (default:
    `leases.stale_after`).
    With `dry_run` nothing is removed and the outcome says what would be.
    Never raises for one leftover that cannot be removed: its item says
    ``failed`` and why.
    """
    work = _Recovery(backends, dry_run, stale_after() if lease_ttl is None else lease_ttl)
    for store in stores:
        work.store(store)
    for journal in journals:
        work.local(journal)
    for name, backend in sorted(backends.items()):
        work.sweep(name, backend.driver)
    return RecoverOutcome(tuple(work.items), dry_run)


def _text(exc: Exception) -> str:
    """What went wrong, in words: an OSError's reason and file, never ``[Errno N] ...``."""
    return os_error_text(exc) if isinstance(exc, OSError) else str(exc)
