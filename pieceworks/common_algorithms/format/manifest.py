"""The backup manifest: the one object that makes a set of chunks a backup.

A backup is its manifest ``manifests/<backup_id>.json``; chunks are shared,
content-addressed objects (`pieceworks.protocols.chunks`). The manifest is
written last and atomically (one `IObjectStore.put`), so a backup exists
whole or not at all. It lists every non-empty chunk of the volume; a range
no chunk covers is a hole and restores as zeros. `parent` is informational:
a restore reads only this manifest, never a chain of parents.

On disk (format version 1) a manifest is one compact JSON document::

    {"format": "pieceworks.manifest", "version": 1, "sha256": "<hex>",
     "manifest": {...body...}}

``sha256`` is the hash of the body serialised canonically (sorted keys, no
spaces, ASCII), so any damage to the body is reported as `CorruptionError`.
In the body, chunks are arrays ``[offset, length, sha256, codec,
stored_length]`` (named by ``chunk_fields``) to keep large manifests small.
A reader refuses a version it does not know rather than guess.

``labels`` (an object of string keys and values, from ``backup --label
K=V``) is written only when a backup has labels, so a manifest without
labels is byte for byte what earlier versions wrote, and a reader of an
earlier version ignores it (the checksum covers it either way).
``enhancers_used`` (``{"changed-blocks": {"bytes_skipped": N}, ...}``, the
enhancers the backup's reads went through and the bytes each let it skip)
is optional the same way: written only when an enhancer was used.

The document is `manifest_document.Manifest` (its JSON helpers in
`manifest_json`, its field checks in `manifest_checks`); reading, writing
and listing manifests in a store is `manifest_store`. This module gathers
their public names, which is where callers import them from.
"""

from __future__ import annotations

from pieceworks.common_algorithms.format.manifest_checks import check_labels
from pieceworks.common_algorithms.format.manifest_document import (
    FORMAT_VERSION,
    BackupExists,
    Manifest,
    UnknownFormatVersion,
)
from pieceworks.common_algorithms.format.manifest_store import (
    ManifestScan,
    UnreadableManifest,
    UnreadableManifests,
    known_chunks,
    latest_manifest,
    list_backup_ids,
    list_manifests,
    manifest_key,
    read_manifest,
    scan_manifests,
    write_manifest,
)

__all__ = [
    "FORMAT_VERSION",
    "BackupExists",
    "UnknownFormatVersion",
    "Manifest",
    "ManifestScan",
    "UnreadableManifest",
    "UnreadableManifests",
    "check_labels",
    "known_chunks",
    "latest_manifest",
    "list_backup_ids",
    "list_manifests",
    "manifest_key",
    "read_manifest",
    "scan_manifests",
    "write_manifest",
]
