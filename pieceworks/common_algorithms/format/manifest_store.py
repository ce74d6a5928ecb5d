"""Manifests in a store: where they live, writing, reading and listing them.

A backup is its manifest ``manifests/<backup_id>.json``, written last and
atomically (one `IObjectStore.put`) by `write_manifest`; the document itself
is `pieceworks.common_algorithms.format.manifest_document.Manifest`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from pieceworks.common_algorithms.format.heap import release_free_heap
from pieceworks.common_algorithms.format.manifest_document import (
    BackupExists,
    Manifest,
    UnknownFormatVersion,
)
from pieceworks.protocols import (
    BackendError,
    BackupNotFound,
    ChunkRef,
    CorruptionError,
    IObjectStore,
    ObjectNotFound,
    TransientError,
    validate_id,
)

__all__ = [
    "MANIFEST_PREFIX",
    "ManifestScan",
    "UnreadableManifest",
    "UnreadableManifests",
    "known_chunks",
    "latest_manifest",
    "list_backup_ids",
    "list_manifests",
    "manifest_key",
    "read_manifest",
    "scan_manifests",
    "write_manifest",
]

MANIFEST_PREFIX: Final = "manifests/"

log = logging.getLogger(__name__)
#: Chunks from which writing a manifest first returns the heap's free pages (about 1 MiB
#: of manifest, `heap.LARGE_BYTES`, at about 106 bytes a chunk).
_CHUNKS_WORTH_TRIMMING: Final = 10_000
_KEY = re.compile(r"manifests/([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.json")


def manifest_key(backup_id: str) -> str:
    """The object key of a backup's manifest: ``manifests/<backup_id>.json``."""
    return f"{MANIFEST_PREFIX}{validate_id('backup id', backup_id)}.json"


def write_manifest(store: IObjectStore, manifest: Manifest) -> None:
    """Store `manifest` atomically (one `put`): from then on the backup exists.

    Call it after every chunk is stored. Writing is idempotent: if the
    store already holds a manifest of this backup id with the same content
    (every field but `created`, the time of writing: a step re-run after a
    crash writes it again later), this returns and the stored manifest stays
    as it is. A manifest of the same id with different content (or one that
    does not parse) is never replaced: raise `BackupExists` (the check guards
    against reusing an id, not against two concurrent writers of one id,
    which backup ids being unique per run rules out).
    """
    key = manifest_key(manifest.backup_id)
    try:
        existing = store.get(key)
    except ObjectNotFound:
        # what was freed before (an incremental's parent, its transfer's columns) goes
        # back to the system before the manifest's bytes are made (see `heap`)
        if len(manifest.chunks) >= _CHUNKS_WORTH_TRIMMING:
            release_free_heap()
        store.put(key, memoryview(manifest.encoded()))  # no second copy of a large manifest
        return
    if _same_backup(existing, manifest, key):
        return
    raise BackupExists(
        f"backup {manifest.backup_id!r} already exists in the store ({key}) with other"
        " content; choose a new backup id or delete the old backup first"
    )


def _same_backup(stored: bytes, manifest: Manifest, key: str) -> bool:
    """Whether `stored` (the bytes under `key`) records `manifest`'s backup, `created` aside."""
    try:
        old = Manifest.from_json(stored, key)
    except (CorruptionError, UnknownFormatVersion):
        return False
    return dataclasses.replace(old, created=manifest.created) == manifest


def read_manifest(store: IObjectStore, backup_id: str) -> Manifest:
    """Return the manifest of `backup_id`.

    Raise `BackupNotFound` naming the id if there is none, `CorruptionError`
    if it is damaged, invalid, or records another id, and
    `UnknownFormatVersion` if it was written by a newer format.
    """
    key = manifest_key(backup_id)
    try:
        data = store.get(key)
    except ObjectNotFound:
        raise BackupNotFound(f"no backup {backup_id!r} in the store (no object {key})") from None
    manifest = Manifest.from_json(data, f"manifest of backup {backup_id!r} ({key})")
    size = len(data)
    del data
    release_free_heap(size)  # a large manifest's bytes, freed: see `heap`
    if manifest.backup_id != backup_id:
        raise CorruptionError(
            f"manifest {key} records backup id {manifest.backup_id!r}, not {backup_id!r}"
        )
    return manifest


def list_backup_ids(store: IObjectStore) -> list[str]:
    """The ids of every backup in the store, in key order (manifests are not read)."""
    return [m.group(1) for key in store.list(MANIFEST_PREFIX) if (m := _KEY.fullmatch(key))]


@dataclass(frozen=True, slots=True)
class UnreadableManifest:
    """A manifest that exists but cannot be read: its backup id, key and why."""

    backup_id: str
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class ManifestScan:
    """Every manifest of a store: those read (oldest first) and those that cannot be."""

    manifests: tuple[Manifest, ...]
    unreadable: tuple[UnreadableManifest, ...]


class UnreadableManifests(CorruptionError):
    """One or more manifests cannot be read, so what they reference is unknown.

    `unreadable` names each one and why. Raised by `list_manifests`, for
    callers (garbage collection) that must not guess; the message says how
    to resolve it.
    """

    def __init__(self, unreadable: Iterable[UnreadableManifest]) -> None:
        self.unreadable = tuple(unreadable)
        names = "; ".join(f"{u.key}: {u.reason}" for u in self.unreadable)
        ids = " ".join(u.backup_id for u in self.unreadable)
        super().__init__(
            f"{len(self.unreadable)} manifest(s) cannot be read: {names}. Nothing is"
            " collected while a manifest cannot be read (its chunks would be lost). Resolve"
            " it by putting back an intact copy of each (from a replica of the store), or by"
            f" deleting the backup(s) for good with `pieceworks delete` ({ids})"
        )


def scan_manifests(store: IObjectStore) -> ManifestScan:
    """Read every manifest in the store; one that cannot be read harms only itself.

    A damaged, invalid or newer-format manifest, or one the store refuses
    to return (`BackendError`, permissions), is listed in `unreadable`
    instead of raising; a `TransientError` is raised (try again later).
    """
    manifests: list[Manifest] = []
    unreadable: list[UnreadableManifest] = []
    for backup_id in list_backup_ids(store):
        try:
            manifests.append(read_manifest(store, backup_id))
        except BackupNotFound:  # deleted while we listed
            continue
        except TransientError:
            raise
        except (CorruptionError, UnknownFormatVersion, BackendError) as exc:
            unreadable.append(UnreadableManifest(backup_id, manifest_key(backup_id), str(exc)))
    manifests.sort(key=lambda m: (m.created, m.backup_id))
    return ManifestScan(tuple(manifests), tuple(unreadable))


def list_manifests(store: IObjectStore) -> list[Manifest]:
    """Every manifest in the store, oldest first (by `created`, then id).

    Raise `UnreadableManifests` (a `CorruptionError`) naming every manifest
    that cannot be read: a caller that decides what to keep (garbage
    collection) must not guess. Use `scan_manifests` to go on without them.
    """
    scan = scan_manifests(store)
    if scan.unreadable:
        raise UnreadableManifests(scan.unreadable)
    return list(scan.manifests)


def latest_manifest(
    store: IObjectStore, volume_id: str, *, backend: str | None = None
) -> Manifest | None:
    """The newest readable backup of `volume_id` (of `backend` only, if given), or None.

    Newest: the greatest ``(created, backup_id)``, as `scan_manifests` orders
    them. Manifests are read one at a time and only the newest so far is
    kept (not every manifest of the store at once: at 57 bytes a chunk, a
    store of many large backups). Manifests that cannot be read are skipped
    with a warning: an incremental then builds on the newest one it can read
    (every chunk it reuses is checked in the store anyway).
    """
    newest: Manifest | None = None
    for backup_id in list_backup_ids(store):
        try:
            manifest = read_manifest(store, backup_id)
        except BackupNotFound:  # deleted while we listed
            continue
        except TransientError:
            raise
        except (CorruptionError, UnknownFormatVersion, BackendError) as exc:
            key = manifest_key(backup_id)
            log.warning("skipping manifest %s, which cannot be read: %s", key, exc)
            continue
        if manifest.volume_id != volume_id or (backend is not None and manifest.backend != backend):
            continue
        if newest is None or (manifest.created, manifest.backup_id) > (
            newest.created,
            newest.backup_id,
        ):
            newest = manifest
    return newest


def known_chunks(manifests: Iterable[Manifest]) -> dict[str, ChunkRef]:
    """Chunks the given manifests reference, by digest (the ``known`` of a backup).

    A backup that is handed this mapping treats those digests as already
    stored, with the codec and stored length recorded here, without asking
    the store. Read the manifests while holding a backup lease
    (`pieceworks.common_algorithms.gc.collection.backup_lease`) so that garbage
    collection cannot remove their chunks meanwhile.
    """
    return {c.digest: c for m in manifests for c in m.chunks}
