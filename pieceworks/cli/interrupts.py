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
"""

from __future__ import annotations

import contextlib
import logging

from pieceworks.cli.signals import signals_ignored
from pieceworks.common_algorithms import Backend, BackupRequest, Plan, Store
from pieceworks.common_algorithms.format.manifest import list_backup_ids, read_manifest
from pieceworks.common_algorithms.operations.backup import abandon_backup as undo_backup
from pieceworks.protocols import PieceworksError
from pieceworks.protocols.chunks import chunk_key

__all__ = ["abandon_backup", "unreferenced_chunks"]

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
