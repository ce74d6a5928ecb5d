"""Copy backups from one store to another: restic's ``copy``, an off-site copy.

`copy_backups` copies each chosen backup's manifest and the chunk objects it
needs from a source store to a target store:

* a chunk the target already holds (same id, present with its size) is not
  sent again, so a second copy of a volume costs only its new chunks;
* every chunk is read back and checked against its id before it is written
  (`decode_chunk`): a damaged source chunk stops the copy of that backup with
  a `CorruptionError` naming the chunk and its offset, and nothing damaged
  reaches the target;
* between stores that name chunks differently (a plain store and an encrypted
  one, or two encrypted stores with different keys) each chunk is renamed to
  the target's id (`chunk_id_for`), and sealed or unsealed by the stores
  themselves (`EncryptedStore`); the encoded chunk (its codec and
  compressed bytes) is kept as it is, so nothing is recompressed;
* the whole copy holds a read lease on the source (`gc.read_lease`), taken
  before the first manifest is read: a backup deleted from the source
  meanwhile keeps its chunks until the copy is done;
* each manifest is written last, under a lease on the target (so that a
  garbage collection there never takes the chunks of a copy in progress):
  a copy interrupted at any point leaves no partial backup in the target,
  and running it again completes it (chunks already copied are skipped);
* a backup whose manifest the target already has is skipped when it is the
  same backup (same volume, size, creation time and chunk layout), and
  refused (`BackupExists`) when another backup holds its id there.

The copied backup is a backup of the target store like any other: it
verifies, restores and is collected there on its own. Its manifest records
the store it was copied from in ``stats.copied_from``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pieceworks.common_algorithms.backend import Store
from pieceworks.common_algorithms.encryption_lock import require_still_plain
from pieceworks.common_algorithms.format.manifest import (
    BackupExists,
    Manifest,
    list_backup_ids,
    manifest_key,
    read_manifest,
    write_manifest,
)
from pieceworks.common_algorithms.gc.collection import backup_lease
from pieceworks.common_algorithms.gc.leases import read_lease
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.failpoints import failpoint
from pieceworks.protocols import ChunkRef, ObjectNotFound
from pieceworks.protocols.chunks import chunk_key, decode_chunk
from pieceworks.protocols.encrypted_store import chunk_id_for
from pieceworks.protocols.errors import CorruptionError

__all__ = ["CopyOutcome", "copy_backups"]

log = logging.getLogger(__name__)

#: ``progress(bytes_done, bytes_total)``: plain bytes of the chunks handled so far.
CopyProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class CopyOutcome:
    """What `copy_backups` did: backups copied and skipped, chunks sent and skipped."""

    from_store: str
    to_store: str
    backups_copied: tuple[str, ...]
    backups_skipped: tuple[str, ...]
    chunks_copied: int
    chunks_skipped: int
    bytes_copied: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``pieceworks copy``.

        ``copied_backup_ids`` and ``skipped_backup_ids`` list backup ids
        (``chunks_copied`` is a count); ``backups_copied`` and
        ``backups_skipped`` are their deprecated old names
        (`pieceworks.common_algorithms.json_fields`).
        """
        return with_deprecated(
            "copy",
            {
                "from_store": self.from_store,
                "to_store": self.to_store,
                "copied_backup_ids": list(self.backups_copied),
                "skipped_backup_ids": list(self.backups_skipped),
                "chunks_copied": self.chunks_copied,
                "chunks_skipped": self.chunks_skipped,
                "bytes_copied": self.bytes_copied,
                "seconds": round(self.seconds, 3),
            },
        )


def copy_backups(
    source: Store,
    target: Store,
    backup_ids: Sequence[str] = (),
    *,
    volume_id: str | None = None,
    threads: int = 2,
    progress: CopyProgress | None = None,
) -> CopyOutcome:
    """Copy backups from `source` to `target`, oldest first; see the module docstring.

    `backup_ids` names the backups (all of the source's when empty),
    `volume_id` keeps those of one volume. Raise `BackupNotFound` for an id
    the source lacks (before anything is copied), `CorruptionError` for a
    damaged source manifest or chunk, `BackupExists` for an id that names
    another backup in the target.
    """
    if source.name == target.name:
        raise ValueError(f"cannot copy store '{source.name}' onto itself")
    started = time.monotonic()
    # A read lease on the source from before its manifests are read until the last
    # chunk is: a delete there meanwhile defers its collection (see gc).
    with read_lease(source.objects, "copy", backup_ids):
        return _copy(source, target, backup_ids, volume_id, threads, progress, started)


def _copy(
    source: Store,
    target: Store,
    backup_ids: Sequence[str],
    volume_id: str | None,
    threads: int,
    progress: CopyProgress | None,
    started: float,
) -> CopyOutcome:
    ids = list(backup_ids) or list_backup_ids(source.objects)
    manifests = [read_manifest(source.objects, backup_id) for backup_id in ids]
    if volume_id is not None:
        manifests = [m for m in manifests if m.volume_id == volume_id]
    manifests.sort(key=lambda m: (m.created, m.backup_id))
    copier = _Copier(source, target, threads, progress, sum(_plain_bytes(m) for m in manifests))
    copied: list[str] = []
    skipped: list[str] = []
    for manifest in manifests:
        if _already_there(target, manifest):
            skipped.append(manifest.backup_id)
            copier.done += _plain_bytes(manifest)
            continue
        copier.copy(manifest)
        copied.append(manifest.backup_id)
    return CopyOutcome(
        source.name,
        target.name,
        tuple(copied),
        tuple(skipped),
        copier.chunks_copied,
        copier.chunks_skipped,
        copier.bytes_copied,
        time.monotonic() - started,
    )


def _plain_bytes(manifest: Manifest) -> int:
    seen: dict[str, int] = {}
    for ref in manifest.chunks:
        seen.setdefault(ref.digest, ref.length)
    return sum(seen.values())


def _layout(manifest: Manifest) -> tuple[object, ...]:
    return (
        manifest.volume_id,
        manifest.size,
        manifest.chunk_size,
        manifest.created,
        tuple((ref.offset, ref.length) for ref in manifest.chunks),
    )


def _already_there(target: Store, manifest: Manifest) -> bool:
    """Whether the target holds this backup already; `BackupExists` if another one."""
    try:
        target.objects.head(manifest_key(manifest.backup_id))
    except ObjectNotFound:
        return False
    try:
        there = read_manifest(target.objects, manifest.backup_id)
    except CorruptionError as exc:  # the source's intact copy cannot go over it by itself
        raise CorruptionError(
            f"{exc}; in store '{target.name}' (the source's copy is intact): remove the"
            f" damaged one with `pieceworks delete {manifest.backup_id} --store"
            f" {target.name}`, then copy again"
        ) from None
    if _layout(there) != _layout(manifest):
        raise BackupExists(
            f"store '{target.name}' already holds another backup with id"
            f" '{manifest.backup_id}' (volume '{there.volume_id}'): nothing of it was copied"
        )
    return True


class _Copier:
    """Copies the chunks of one manifest at a time, then writes its manifest."""

    def __init__(
        self,
        source: Store,
        target: Store,
        threads: int,
        progress: CopyProgress | None,
        total: int,
    ) -> None:
        self.source, self.target = source, target
        self.source_id, self.target_id = chunk_id_for(source.objects), chunk_id_for(target.objects)
        self.threads, self.progress, self.total = threads, progress, total
        self.done = self.chunks_copied = self.chunks_skipped = self.bytes_copied = 0

    def copy(self, manifest: Manifest) -> None:
        first: dict[str, ChunkRef] = {}
        for ref in manifest.chunks:
            first.setdefault(ref.digest, ref)
        with (
            backup_lease(self.target.objects, manifest.backup_id),
            ThreadPoolExecutor(self.threads, thread_name_prefix="pieceworks-copy") as pool,
        ):
            # A target opened plain that a `key init` encrypts meanwhile: stop (encryption_lock).
            require_still_plain(self.target.name, self.target.objects)
            renamed: dict[str, tuple[str, int]] = {}
            for digest, (new_digest, stored_length, sent) in zip(
                first, pool.map(self._copy_chunk, first.values()), strict=True
            ):
                renamed[digest] = (new_digest, stored_length)
                self.chunks_copied += sent
                self.chunks_skipped += not sent
                self.bytes_copied += stored_length if sent else 0
                self.done += first[digest].length
                if self.progress is not None:
                    self.progress(self.done, self.total)
            chunks = tuple(
                dataclasses.replace(
                    ref, digest=renamed[ref.digest][0], stored_length=renamed[ref.digest][1]
                )
                for ref in manifest.chunks
            )
            failpoint("copy.before-manifest")
            require_still_plain(self.target.name, self.target.objects, before_data=False)
            stats = {**manifest.stats, "copied_from": self.source.name}
            write_manifest(
                self.target.objects, dataclasses.replace(manifest, chunks=chunks, stats=stats)
            )
        log.info("copied backup %s to store %s", manifest.backup_id, self.target.name)

    def _copy_chunk(self, ref: ChunkRef) -> tuple[str, int, bool]:
        """(target id, stored length, whether it was sent) of one checked chunk."""
        key = chunk_key(ref.digest)
        try:
            stored = self.source.objects.get(key)
        except ObjectNotFound:
            raise CorruptionError(
                f"chunk {ref.digest} at offset {ref.offset} is missing from store"
                f" '{self.source.name}': the backup cannot be copied",
                ref.offset,
            ) from None
        plain = decode_chunk(stored, ref.digest, ref.length, ref.offset, self.source_id)
        digest = ref.digest if self.source_id is self.target_id else self.target_id(plain)
        target_key = chunk_key(digest)
        try:
            if self.target.objects.head(target_key).size == len(stored):
                return digest, len(stored), False
            log.warning("replacing chunk object %s of the wrong size", target_key)
        except ObjectNotFound:
            pass
        self.target.objects.put(target_key, stored)
        failpoint("copy.chunk-copied")
        return digest, len(stored), True
