"""What an interrupted (Ctrl-C) operation leaves behind, and saying so.

TaskFlow reverts a flow whose task fails, but a ``KeyboardInterrupt`` is not
a task failure: it unwinds through the engine and nothing is reverted.
`abandon_backup` therefore has the backup template undo what the engine
could not (`common_algorithms.operations.backup.abandon_backup`: the temporary snapshot
is deleted, the store lease released), so that the backend is left clean
and a later ``delete``/``gc`` is not held back by a dead lease. The
manifest is written last and atomically, so an interrupted backup either
exists whole or not at all; the message says which, and how many chunk
objects the store holds that no backup references yet.

A restore or a replication commits its target volume at once, at its end:
`interrupted_write` says whether that had happened (a new volume that now
exists) or not, and for a volume being replaced that it is whole, old or
new. `abandon_replication` deletes the temporary snapshot an interrupted
replication took (its run journal names it), as `abandon_backup` does.
"""

from __future__ import annotations

import contextlib
import logging

from pieceworks.cli.signals import signals_ignored
from pieceworks.common_algorithms import Backend, BackupRequest, Plan, ReplicateRequest, Store
from pieceworks.common_algorithms.format.manifest import list_backup_ids, read_manifest
from pieceworks.common_algorithms.gc.journal import LocalJournal
from pieceworks.common_algorithms.gc.leases import forget_temporary, temporary_entries
from pieceworks.common_algorithms.operations.backup import abandon_backup as undo_backup
from pieceworks.common_algorithms.operations.targets import existing_size
from pieceworks.protocols import ISnapshot, PieceworksError, SnapshotRef
from pieceworks.protocols.chunks import chunk_key

__all__ = [
    "abandon_backup",
    "abandon_replication",
    "interrupted_write",
    "unreferenced_chunks",
    "volume_exists",
]

log = logging.getLogger(__name__)

_CHUNK_PREFIX = "chunks/"


def unreferenced_chunks(store: Store) -> int:
    """Chunk objects in `store` that no manifest references."""
    referenced: set[str] = set()
    for backup_id in list_backup_ids(store.objects):
        with contextlib.suppress(PieceworksError):
            referenced.update(
                chunk_key(d) for d in read_manifest(store.objects, backup_id).digests()
            )
    return sum(1 for key in store.objects.list(_CHUNK_PREFIX) if key not in referenced)


def abandon_backup(backend: Backend, store: Store, request: BackupRequest, plan: Plan) -> str:
    """Undo what an interrupted backup could not revert; return the message to print."""
    with signals_ignored():
        try:
            undo_backup(backend, store, request, plan)
        except Exception as exc:  # report, then say what remains
            log.warning("could not undo all of backup %s: %s", request.backup_id, exc)
        if request.backup_id in list_backup_ids(store.objects):
            return (
                f"interrupted: backup {request.backup_id} had already been written whole"
                " before the interrupt; it is complete and usable"
            )
        try:
            left = unreferenced_chunks(store)
        except PieceworksError as exc:
            return f"interrupted: no backup was written (cannot count stored chunks: {exc})"
    return (
        f"interrupted: no backup was written; {left} chunk objects already stored will be"
        " reused by the next backup or removed by delete/gc"
    )


def volume_exists(backend: Backend, volume_id: str) -> bool | None:
    """Whether `volume_id` exists on `backend` (None: the backend cannot tell, or failed)."""
    try:
        return existing_size(backend, volume_id).exists
    except Exception:  # only a message depends on it
        return None


def interrupted_write(
    backend: Backend,
    volume_id: str,
    existed: bool | None,
    operation: str,
    content: str,
    leftover: str = "",
) -> str:
    """The message for a restore or replication (`operation`) into `volume_id` interrupted.

    `existed` is whether the volume existed before the run (`volume_exists`);
    `content` names what was being written ("backup bk-1"). The target is
    committed at once at the end, so a new volume that exists now was
    written whole, and an existing one holds its old content or the whole
    new one. `leftover` (a sentence) is appended.
    """
    where = f"volume '{volume_id}' on backend '{backend.name}'"
    with signals_ignored():
        now = volume_exists(backend, volume_id)
    if existed is False and now:
        text = (
            f"the {operation} had completed before the interrupt: {where} holds {content}"
            " whole and is usable"
        )
    elif existed is False:
        text = f"the {operation} did not complete; {where} was not created"
    else:
        text = (
            f"{where} holds either its old content or {content} whole, never a mix"
            f" (a {operation} replaces a volume at once, at its end)"
        )
    return f"interrupted: {text}" + (f"; {leftover}" if leftover else "")


def abandon_replication(
    source: Backend, store: Store | None, journal: LocalJournal, request: ReplicateRequest
) -> str:
    """Delete the temporary snapshots the interrupted replication `request` took on `source`.

    TaskFlow reverts nothing on a ``KeyboardInterrupt``; the run journal
    (``runs/<operation id>`` in `store`, else `journal`) names each snapshot
    the run took. Return a sentence saying what was deleted or is left
    (empty when the run took none); errors are logged, never raised.
    """
    op = request.operation_id
    deleted, left = 0, 0
    with signals_ignored():
        try:
            entries = (
                temporary_entries(store.objects, op) if store is not None else journal.entries(op)
            )
        except Exception as exc:
            log.warning("cannot read the journal of replication %s: %s", op, exc)
            return "its temporary snapshot, if any, is left for `pieceworks recover`"
        for entry in entries:
            if entry.get("backend") != source.name:
                continue
            try:
                source.use(ISnapshot).delete_snapshot(
                    SnapshotRef(entry["volume_id"], entry["snapshot_id"])
                )
                if store is not None:
                    forget_temporary(store.objects, op, entry)
                else:
                    journal.forget(op, entry)
                deleted += 1
            except Exception as exc:  # keep cleaning; say what is left
                log.warning("cannot delete temporary snapshot %s: %s", entry, exc)
                left += 1
    if left:
        return f"{left} temporary snapshot(s) are left for `pieceworks recover`"
    return "its temporary snapshot was deleted" if deleted else ""
