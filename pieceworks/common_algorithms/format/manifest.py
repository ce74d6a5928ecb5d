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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from pieceworks.protocols import (
    BackendError,
    BackupNotFound,
    ChunkRef,
    CorruptionError,
    IObjectStore,
    ObjectNotFound,
    PieceworksError,
    TransientError,
    validate_id,
)
from pieceworks.protocols.chunk_list import (
    DIGEST_BYTES,
    ChunkList,
    ChunkListBuilder,
    ChunksByOffset,
)
from pieceworks.protocols.chunks import CODECS
from pieceworks.protocols.values import chunks_to_json

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

FORMAT_VERSION: Final = 1
FORMAT_NAME: Final = "pieceworks.manifest"
MANIFEST_PREFIX: Final = "manifests/"
CHUNK_FIELDS: Final = ("offset", "length", "sha256", "codec", "stored_length")

log = logging.getLogger(__name__)
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LABEL_VALUE_MAX = 256
_KEY = re.compile(r"manifests/([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.json")


class BackupExists(PieceworksError):
    """A manifest already exists under the backup id being written."""


class UnknownFormatVersion(PieceworksError):
    """A manifest was written in a format version this code cannot read.

    Not a `CorruptionError`: the manifest may be intact, only newer.
    """


@dataclass(frozen=True)
class Manifest:
    """Everything needed to restore one backup, and what it cost.

    `chunks` are sorted by offset and do not overlap; bytes no chunk covers
    are zeros. Any iterable of `ChunkRef` is accepted and kept as a
    `ChunkList` (about 57 bytes a chunk: `pieceworks.protocols.chunk_list`),
    which `chunk_list` gives typed as one.
    `codec` is the codec the backup asked for (reused chunks may carry
    another: see each `ChunkRef.codec`). `stats` holds figures such as
    ``bytes_read`` for reports (str keys, int or str values). Construction
    validates everything and raises `ValueError` naming the first problem.
    """

    backup_id: str
    volume_id: str
    backend: str
    size: int
    chunk_size: int
    codec: str
    chunks: Sequence[ChunkRef]
    created: float
    strategy: str
    parent: str | None = None
    change_token: str | None = None
    incremental: bool = False
    stats: Mapping[str, int | str] = field(default_factory=dict, hash=False)
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    enhancers_used: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        validate_id("backup id", self.backup_id)
        validate_id("volume id", self.volume_id)
        validate_id("backend name", self.backend)
        if self.parent is not None:
            validate_id("parent backup id", self.parent)
        if not _is_int(self.size) or self.size < 0:
            raise ValueError(f"manifest size must be an int >= 0, not {self.size!r}")
        if not _is_int(self.chunk_size) or self.chunk_size <= 0:
            raise ValueError(f"manifest chunk_size must be an int > 0, not {self.chunk_size!r}")
        if self.codec not in CODECS:
            raise ValueError(f"manifest codec {self.codec!r} is not one of {', '.join(CODECS)}")
        if (
            not isinstance(self.created, int | float)
            or isinstance(self.created, bool)
            or not _finite(self.created)
        ):
            raise ValueError(f"manifest created must be a number, not {self.created!r}")
        if not isinstance(self.strategy, str) or not self.strategy:
            raise ValueError("manifest strategy must be a non-empty string")
        if self.change_token is not None and not isinstance(self.change_token, str):
            raise ValueError("manifest change_token must be a string or None")
        if not isinstance(self.incremental, bool):
            raise ValueError("manifest incremental must be a bool")
        object.__setattr__(self, "chunks", ChunkList.of(self.chunks))
        _check_chunks(self.chunk_list, self.size, self.chunk_size)
        object.__setattr__(self, "stats", _check_stats(self.stats))
        object.__setattr__(self, "labels", MappingProxyType(check_labels(self.labels)))
        object.__setattr__(self, "enhancers_used", _check_enhancers(self.enhancers_used))

    @property
    def chunk_list(self) -> ChunkList:
        """`chunks`, typed as the `ChunkList` construction made of them."""
        return cast(ChunkList, self.chunks)

    @property
    def data_bytes(self) -> int:
        """Plain bytes held in chunks (the volume size minus its holes)."""
        return sum(self.chunk_list.lengths())

    @property
    def stored_bytes(self) -> int:
        """Bytes of the chunk objects this backup references (shared ones included)."""
        return sum(self.chunk_list.stored_lengths())

    def digests(self) -> frozenset[str]:
        """The sha256 of every chunk this backup references."""
        return frozenset(self.chunk_list.hex_digests())

    def chunk_map(self) -> ChunksByOffset:
        """Chunks by volume offset (a `Mapping`, no dict): an incremental's ``reuse``."""
        return self.chunk_list.by_offset()

    def to_json(self) -> bytes:
        """The manifest as compact, self-checksummed JSON (UTF-8 bytes).

        The same bytes as the canonical JSON (`_canonical`) of ``{"format",
        "manifest": body, "sha256": sha256 of the body's canonical JSON,
        "version"}``; `encoded` says how they are made. This copies them
        once more into `bytes` (`write_manifest` puts `encoded`'s buffer).
        """
        return bytes(self.encoded())

    def encoded(self) -> bytearray:
        """`to_json`'s bytes in a buffer of exactly their size, filled in place.

        The chunk rows are encoded from the `ChunkList`'s columns
        `_ROWS_AT_ONCE` at a time and hashed as they come; their length is
        counted first (`_rows_length`), so the buffer is allocated once and
        never grows: the peak is the manifest once (about 106 bytes a chunk,
        28 MB for the 262,144 chunks of 1 TiB in 4 MiB chunks) plus one batch
        of rows, not a list of rows and the document twice.
        """
        body = self._body(chunks=_PLACEHOLDER)
        head, found, tail = _canonical(body).partition(_canonical(_PLACEHOLDER))
        assert found, "the chunk rows' placeholder is missing from the manifest's JSON"
        prefix = b'{"format":%s,"manifest":' % _canonical(FORMAT_NAME)
        version = _canonical(FORMAT_VERSION)
        suffix_length = len(b',"sha256":"","version":}') + 64 + len(version)
        rows = _rows_length(self.chunk_list)
        out = bytearray(len(prefix) + len(head) + rows + len(tail) + suffix_length)
        view, end = memoryview(out), 0

        def put(piece: bytes) -> None:
            nonlocal end
            view[end : end + len(piece)] = piece
            end += len(piece)

        put(prefix)
        digest = hashlib.sha256()
        for piece in itertools.chain((head,), _encoded_rows(self.chunk_list), (tail,)):
            digest.update(piece)
            put(piece)
        put(b',"sha256":"%s","version":%s}' % (digest.hexdigest().encode(), version))
        view.release()
        assert end == len(out), "the manifest's length was miscounted"
        return out

    @classmethod
    def from_json(cls, data: bytes | str, name: str = "manifest") -> Manifest:
        """Parse and check JSON written by `to_json`.

        Raise `CorruptionError` (mentioning `name`) if the document is not a
        manifest, its checksum does not match or its content is invalid, and
        `UnknownFormatVersion` for a version this code does not read.

        Memory: the chunk rows are parsed `_ROWS_AT_ONCE`-ish at a time
        (`_from_json_in_batches`), not as one list of JSON values (about 360
        bytes a chunk, and its canonical JSON twice more, to check the sum);
        a document that path does not take is parsed whole, as it always was,
        so what is accepted and every error stay the same.
        """
        if isinstance(data, bytes):
            with contextlib.suppress(*_NOT_THE_FAST_PATH):
                found = cls._from_json_in_batches(data)
                if found is not None:
                    return found
        try:
            doc = json.loads(data, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptionError(f"{name} is damaged: not valid JSON ({exc})") from None
        except RecursionError:
            raise CorruptionError(f"{name} is damaged: JSON nested too deeply") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise CorruptionError(f"{name} is damaged or not a pieceworks manifest")
        version = doc.get("version")
        if version != FORMAT_VERSION:
            raise UnknownFormatVersion(
                f"{name} has format version {version!r}; this pieceworks reads version"
                f" {FORMAT_VERSION} only (upgrade pieceworks to read it)"
            )
        body = doc.get("manifest")
        if not isinstance(body, dict):
            raise CorruptionError(f"{name} is damaged: no manifest body")
        try:
            canonical = _canonical(body)
        except (ValueError, TypeError, RecursionError) as exc:  # 1e999 is inf; deep nesting
            raise CorruptionError(f"{name} is damaged: {type(exc).__name__}: {exc}") from None
        if hashlib.sha256(canonical).hexdigest() != doc.get("sha256"):
            raise CorruptionError(f"{name} is damaged: its checksum does not match its content")
        try:
            return cls._from_body(body)
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise CorruptionError(f"{name} is invalid: {exc}") from None

    def _body(self, chunks: object = None) -> dict[str, Any]:
        """The manifest's fields as JSON values; `chunks` in place of the rows if given."""
        body: dict[str, Any] = {
            "backup_id": self.backup_id,
            "volume_id": self.volume_id,
            "backend": self.backend,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "codec": self.codec,
            "created": self.created,
            "strategy": self.strategy,
            "parent": self.parent,
            "change_token": self.change_token,
            "incremental": self.incremental,
            "stats": dict(self.stats),
            "chunk_fields": list(CHUNK_FIELDS),
            "chunks": chunks_to_json(self.chunks) if chunks is None else chunks,
        }
        if self.labels:
            body["labels"] = dict(self.labels)
        if self.enhancers_used:
            body["enhancers_used"] = {
                k: {"bytes_skipped": v} for k, v in self.enhancers_used.items()
            }
        return body

    @classmethod
    def _from_json_in_batches(cls, data: bytes) -> Manifest | None:
        """`from_json` of a document whose rows parse in batches, or None (parse it whole).

        The rows are the array after the first ``"chunks":[``, up to the
        first ``]]``; the rest of the document is parsed with a placeholder
        in their place, which must land as the body's ``chunks``; the rows
        are parsed in pieces cut at ``],[`` (a cut inside a string leaves a
        piece that is not JSON); the checksum is computed over the canonical
        JSON of the body with the rows encoded piece by piece. Anything
        unexpected (another layout, damage, a row out of place) returns None
        or raises one of `_NOT_THE_FAST_PATH`, so that the whole-document
        parse decides, with its own errors.
        """
        opening = data.find(_ROWS_KEY)
        if opening < 0:
            return None
        opening += len(_ROWS_KEY) - 1  # the rows' "["
        if data[opening + 1 : opening + 2] == b"]":
            closing = opening + 1  # no rows
        else:
            closing = data.find(b"]]", opening) + 1
            if closing <= 0:
                return None
        doc = json.loads(
            data[:opening] + _canonical(_PLACEHOLDER) + data[closing + 1 :],
            parse_constant=_refuse_constant,
        )
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            return None
        body = doc.get("manifest")
        if doc.get("version") != FORMAT_VERSION or not isinstance(body, dict):
            return None
        if body.get("chunks") != _PLACEHOLDER:
            return None
        head, found, tail = _canonical(body).partition(_canonical(_PLACEHOLDER))
        if not found:
            return None
        digest = hashlib.sha256(head)
        builder = ChunkListBuilder()
        separator = b"["
        start = opening + 1
        while start < closing:
            cut = data.find(b"],[", start + _ROW_BYTES_AT_ONCE, closing)
            stop = closing if cut < 0 else cut + 1
            rows = json.loads(b"[" + data[start:stop] + b"]", parse_constant=_refuse_constant)
            digest.update(separator + _canonical(rows)[1:-1])
            separator = b","
            _add_rows(builder, rows)
            start = stop + 1
        digest.update(b"[]" if separator == b"[" else b"]")
        digest.update(tail)
        if digest.hexdigest() != doc.get("sha256"):
            return None
        return cls._from_body(body, builder.build())

    @classmethod
    def _from_body(cls, body: Mapping[str, Any], chunks: ChunkList | None = None) -> Manifest:
        """The manifest of a checked body; `chunks` already read from its rows if given."""
        if list(body["chunk_fields"]) != list(CHUNK_FIELDS):
            raise ValueError(f"unexpected chunk fields {body['chunk_fields']!r}")
        if chunks is None:
            builder = ChunkListBuilder()
            _add_rows(builder, body["chunks"])
            chunks = builder.build()
        return cls(
            backup_id=body["backup_id"],
            volume_id=body["volume_id"],
            backend=body["backend"],
            size=body["size"],
            chunk_size=body["chunk_size"],
            codec=body["codec"],
            chunks=chunks,
            created=body["created"],
            strategy=body["strategy"],
            parent=body["parent"],
            change_token=body["change_token"],
            incremental=body["incremental"],
            stats=body["stats"],
            labels=body.get("labels", {}),
            enhancers_used=_enhancers_from(body.get("enhancers_used", {})),
        )


def _add_rows(builder: ChunkListBuilder, rows: object) -> None:
    """Append the chunk `rows` of a manifest body; `ValueError` naming the first bad one."""
    if not isinstance(rows, list):
        raise ValueError(f"malformed chunk rows {type(rows).__name__}")
    for row in rows:
        if not isinstance(row, list) or len(row) != len(CHUNK_FIELDS):
            raise ValueError(f"malformed chunk entry {row!r}")
        offset, length, digest, codec, stored = row
        if not (_is_int(offset) and _is_int(length) and _is_int(stored)):
            raise ValueError(f"chunk at offset {offset!r}: offset and lengths must be ints")
        if stored < 0:
            raise ValueError(f"chunk at offset {offset} has a negative stored length")
        if offset < 0 or length < 0:
            raise ValueError(f"chunk at offset {offset} has a negative offset or length")
        builder.add(offset, length, digest, codec, stored)


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


#: Stands for the chunk rows in `Manifest.to_json` (no manifest field can hold it: a
#: label or stat value would be one JSON string among others, and this one is unique).
_PLACEHOLDER: Final = "\x00pieceworks-chunk-rows-4f0b8d2c9e6a4c1b"
#: Chunk rows `_encoded_rows` encodes at a time.
_ROWS_AT_ONCE: Final = 4096
#: About the bytes of JSON `_from_json_in_batches` parses at a time (some 4,000 rows).
_ROW_BYTES_AT_ONCE: Final = 400_000
#: Where the body's chunk rows start in a manifest's JSON (its keys are sorted: after
#: ``"chunk_size"``; no string can hold it, a quote in one being escaped).
_ROWS_KEY: Final = b'"chunks":['
#: What makes `Manifest._from_json_in_batches` leave a document to the whole parse.
_NOT_THE_FAST_PATH: Final = (
    ValueError,
    TypeError,
    KeyError,
    RecursionError,
    UnicodeDecodeError,
    OverflowError,
)


def _encoded_rows(chunks: ChunkList) -> Iterator[bytes]:
    """The canonical JSON of the chunk rows' list, in pieces: ``[``, rows, ``,``..., ``]``.

    Straight from the columns: ``[offset,length,"<hex digest>",<codec as a JSON
    string>,stored_length]``, exactly what ``json.dumps`` makes of the row
    (ints in decimal, a hex digest needs no escaping, the codec name is
    encoded by `_canonical` itself).
    """
    names = [_canonical(name) for name in chunks.codec_names()]
    offsets, lengths, stored = chunks.offsets(), chunks.lengths(), chunks.stored_lengths()
    codecs, digests = chunks.codec_indexes(), chunks.digests_blob()
    yield b"["
    for start in range(0, len(chunks), _ROWS_AT_ONCE):
        stop = min(start + _ROWS_AT_ONCE, len(chunks))
        hexes = digests[start * DIGEST_BYTES : stop * DIGEST_BYTES].hex().encode("ascii")
        rows = b",".join(
            [
                b'[%d,%d,"%b",%b,%d]' % (o, n, hexes[64 * j : 64 * j + 64], names[c], s)
                for j, (o, n, c, s) in enumerate(
                    zip(
                        offsets[start:stop],
                        lengths[start:stop],
                        codecs[start:stop],
                        stored[start:stop],
                        strict=True,
                    )
                )
            ]
        )
        yield rows if start == 0 else b"," + rows
    yield b"]"


def _rows_length(chunks: ChunkList) -> int:
    """The length of `_encoded_rows`'s bytes, counted from the columns without encoding.

    Each row is ``[o,l,"<64 hex digits>",<codec>,s]``: 72 bytes, the
    decimal digits of its three ints and its codec's JSON; a comma between
    rows, brackets around them.
    """
    n = len(chunks)
    if not n:
        return 2
    digits = sum(
        sum(map(len, map(str, column)))
        for column in (chunks.offsets(), chunks.lengths(), chunks.stored_lengths())
    )
    indexes = bytes(chunks.codec_indexes())
    codecs = sum(
        len(_canonical(name)) * indexes.count(i) for i, name in enumerate(chunks.codec_names())
    )
    return 2 + (n - 1) + 72 * n + digits + codecs


def _canonical(obj: object) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _refuse_constant(name: str) -> object:
    """JSON's non-standard NaN, Infinity and -Infinity are damage, not numbers."""
    raise ValueError(f"{name} is not a JSON number")


def _finite(number: float) -> bool:
    """Whether `number` is a finite float (an int too large for a float is not)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_chunks(chunks: ChunkList, size: int, chunk_size: int) -> None:
    """`ValueError` naming the first chunk out of order, out of size or of an unknown codec.

    Digests and the ints' types were checked as the `ChunkList` was built.
    """
    names = chunks.codec_names()
    unknown = {i for i, name in enumerate(names) if name not in CODECS}
    if unknown:
        for offset, index in zip(chunks.offsets(), chunks.codec_indexes(), strict=True):
            if index in unknown:
                raise ValueError(f"chunk at offset {offset} has an unknown codec {names[index]!r}")
    end = 0
    for offset, length in zip(chunks.offsets(), chunks.lengths(), strict=True):
        if offset < end:
            raise ValueError(f"chunk at offset {offset} overlaps or precedes the one before")
        if not 0 < length <= chunk_size:
            raise ValueError(
                f"chunk at offset {offset} has length {length}; expected 1..{chunk_size}"
            )
        end = offset + length
        if end > size:
            raise ValueError(f"chunk at offset {offset} ends beyond the volume size {size}")


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` as a dict if valid, else `ValueError` naming the bad label.

    A key is 1-64 letters, digits, ``.``, ``_`` or ``-`` starting with a
    letter or digit; a value is a string of at most 256 printable characters.
    """
    if not isinstance(labels, Mapping):
        raise ValueError(f"manifest labels must be a mapping, not {type(labels).__name__}")
    for k, v in labels.items():
        if not isinstance(k, str) or not _LABEL_KEY.fullmatch(k):
            raise ValueError(
                f"invalid label key {k!r}: use 1-64 letters, digits, '.', '_' or '-',"
                " starting with a letter or digit"
            )
        if not isinstance(v, str) or len(v) > _LABEL_VALUE_MAX or not v.isprintable():
            raise ValueError(
                f"invalid value for label {k!r}: use a string of at most"
                f" {_LABEL_VALUE_MAX} printable characters"
            )
    return dict(labels)


def _enhancers_from(raw: object) -> dict[str, int]:
    """``{name: bytes_skipped}`` from the body's ``enhancers_used`` (`ValueError` if malformed)."""
    if not isinstance(raw, dict) or not all(
        isinstance(v, dict) and "bytes_skipped" in v for v in raw.values()
    ):
        raise ValueError(f"malformed enhancers_used {raw!r}")
    return {k: v["bytes_skipped"] for k, v in raw.items()}


def _check_enhancers(used: Mapping[str, int]) -> Mapping[str, int]:
    if not isinstance(used, Mapping):
        raise ValueError(f"manifest enhancers_used must be a mapping, not {type(used).__name__}")
    for k, v in used.items():
        if not isinstance(k, str) or not k or not _is_int(v) or v < 0:
            raise ValueError(
                f"manifest enhancers_used entry {k!r}: {v!r} is not a name and an int >= 0"
            )
    return MappingProxyType(dict(used))


def _check_stats(stats: Mapping[str, int | str]) -> Mapping[str, int | str]:
    if not isinstance(stats, Mapping):
        raise ValueError(f"manifest stats must be a mapping, not {type(stats).__name__}")
    for k, v in stats.items():
        if not isinstance(k, str) or not isinstance(v, int | str) or isinstance(v, bool):
            raise ValueError(f"manifest stat {k!r}: {v!r} is not a str -> int or str entry")
    return MappingProxyType(dict(stats))
