"""The manifest document: `Manifest`, its fields, checks and JSON form.

The format is described in `pieceworks.common_algorithms.format.manifest`
(and ``docs/format.md``); the JSON helpers are in `manifest_json`, the
field checks in `manifest_checks`, reading and writing it in a store in
`manifest_store`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from pieceworks.common_algorithms.format import manifest_json
from pieceworks.common_algorithms.format.manifest_checks import (
    check_chunks,
    check_enhancers,
    check_labels,
    check_stats,
    enhancers_from,
    finite,
    is_int,
)
from pieceworks.common_algorithms.format.manifest_json import (
    CHUNK_FIELDS,
    NOT_THE_FAST_PATH,
    PLACEHOLDER,
    ROWS_KEY,
    add_rows,
    canonical,
    encoded_rows,
    refuse_constant,
    rows_length,
)
from pieceworks.protocols import (
    ChunkRef,
    CorruptionError,
    PieceworksError,
    validate_id,
)
from pieceworks.protocols.chunk_list import ChunkList, ChunkListBuilder, ChunksByOffset
from pieceworks.protocols.chunks import CODECS
from pieceworks.protocols.values import chunks_to_json

__all__ = [
    "CHUNK_FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "BackupExists",
    "Manifest",
    "UnknownFormatVersion",
]

FORMAT_VERSION: Final = 1
FORMAT_NAME: Final = "pieceworks.manifest"


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
        if not is_int(self.size) or self.size < 0:
            raise ValueError(f"manifest size must be an int >= 0, not {self.size!r}")
        if not is_int(self.chunk_size) or self.chunk_size <= 0:
            raise ValueError(f"manifest chunk_size must be an int > 0, not {self.chunk_size!r}")
        if self.codec not in CODECS:
            raise ValueError(f"manifest codec {self.codec!r} is not one of {', '.join(CODECS)}")
        if (
            not isinstance(self.created, int | float)
            or isinstance(self.created, bool)
            or not finite(self.created)
        ):
            raise ValueError(f"manifest created must be a number, not {self.created!r}")
        if not isinstance(self.strategy, str) or not self.strategy:
            raise ValueError("manifest strategy must be a non-empty string")
        if self.change_token is not None and not isinstance(self.change_token, str):
            raise ValueError("manifest change_token must be a string or None")
        if not isinstance(self.incremental, bool):
            raise ValueError("manifest incremental must be a bool")
        object.__setattr__(self, "chunks", ChunkList.of(self.chunks))
        check_chunks(self.chunk_list, self.size, self.chunk_size)
        object.__setattr__(self, "stats", check_stats(self.stats))
        object.__setattr__(self, "labels", MappingProxyType(check_labels(self.labels)))
        object.__setattr__(self, "enhancers_used", check_enhancers(self.enhancers_used))

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

        The same bytes as the canonical JSON (`canonical`) of ``{"format",
        "manifest": body, "sha256": sha256 of the body's canonical JSON,
        "version"}``; `encoded` says how they are made. This copies them
        once more into `bytes` (`write_manifest` puts `encoded`'s buffer).
        """
        return bytes(self.encoded())

    def encoded(self) -> bytearray:
        """`to_json`'s bytes in a buffer of exactly their size, filled in place.

        The chunk rows are encoded from the `ChunkList`'s columns
        `ROWS_AT_ONCE` at a time and hashed as they come; their length is
        counted first (`rows_length`), so the buffer is allocated once and
        never grows: the peak is the manifest once (about 106 bytes a chunk,
        28 MB for the 262,144 chunks of 1 TiB in 4 MiB chunks) plus one batch
        of rows, not a list of rows and the document twice.
        """
        body = self._body(chunks=PLACEHOLDER)
        head, found, tail = canonical(body).partition(canonical(PLACEHOLDER))
        assert found, "the chunk rows' placeholder is missing from the manifest's JSON"
        prefix = b'{"format":%s,"manifest":' % canonical(FORMAT_NAME)
        version = canonical(FORMAT_VERSION)
        suffix_length = len(b',"sha256":"","version":}') + 64 + len(version)
        rows = rows_length(self.chunk_list)
        out = bytearray(len(prefix) + len(head) + rows + len(tail) + suffix_length)
        view, end = memoryview(out), 0

        def put(piece: bytes) -> None:
            nonlocal end
            view[end : end + len(piece)] = piece
            end += len(piece)

        put(prefix)
        digest = hashlib.sha256()
        for piece in itertools.chain((head,), encoded_rows(self.chunk_list), (tail,)):
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

        Memory: the chunk rows are parsed `ROWS_AT_ONCE`-ish at a time
        (`_from_json_in_batches`), not as one list of JSON values (about 360
        bytes a chunk, and its canonical JSON twice more, to check the sum);
        a document that path does not take is parsed whole, as it always was,
        so what is accepted and every error stay the same.
        """
        if isinstance(data, bytes):
            with contextlib.suppress(*NOT_THE_FAST_PATH):
                found = cls._from_json_in_batches(data)
                if found is not None:
                    return found
        try:
            doc = json.loads(data, parse_constant=refuse_constant)
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
            body_json = canonical(body)
        except (ValueError, TypeError, RecursionError) as exc:  # 1e999 is inf; deep nesting
            raise CorruptionError(f"{name} is damaged: {type(exc).__name__}: {exc}") from None
        if hashlib.sha256(body_json).hexdigest() != doc.get("sha256"):
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
        or raises one of `NOT_THE_FAST_PATH`, so that the whole-document
        parse decides, with its own errors.
        """
        opening = data.find(ROWS_KEY)
        if opening < 0:
            return None
        opening += len(ROWS_KEY) - 1  # the rows' "["
        if data[opening + 1 : opening + 2] == b"]":
            closing = opening + 1  # no rows
        else:
            closing = data.find(b"]]", opening) + 1
            if closing <= 0:
                return None
        doc = json.loads(
            data[:opening] + canonical(PLACEHOLDER) + data[closing + 1 :],
            parse_constant=refuse_constant,
        )
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            return None
        body = doc.get("manifest")
        if doc.get("version") != FORMAT_VERSION or not isinstance(body, dict):
            return None
        if body.get("chunks") != PLACEHOLDER:
            return None
        head, found, tail = canonical(body).partition(canonical(PLACEHOLDER))
        if not found:
            return None
        digest = hashlib.sha256(head)
        builder = ChunkListBuilder()
        separator = b"["
        start = opening + 1
        while start < closing:
            cut = data.find(b"],[", start + manifest_json.ROW_BYTES_AT_ONCE, closing)
            stop = closing if cut < 0 else cut + 1
            rows = json.loads(b"[" + data[start:stop] + b"]", parse_constant=refuse_constant)
            digest.update(separator + canonical(rows)[1:-1])
            separator = b","
            add_rows(builder, rows)
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
            add_rows(builder, body["chunks"])
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
            enhancers_used=enhancers_from(body.get("enhancers_used", {})),
        )
