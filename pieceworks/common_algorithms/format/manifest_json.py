"""The manifest's JSON: canonical encoding, chunk rows encoded and parsed in batches.

`pieceworks.common_algorithms.format.manifest_document.Manifest` writes and
reads its document with these: the body's canonical JSON (sorted keys, no
spaces, ASCII: what its ``sha256`` covers), the chunk rows encoded straight
from a `ChunkList`'s columns `ROWS_AT_ONCE` at a time, their length counted
without encoding them, and rows parsed back into a `ChunkListBuilder`.
The format itself is described in `pieceworks.common_algorithms.format.manifest`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Final

from pieceworks.common_algorithms.format.manifest_checks import is_int
from pieceworks.protocols.chunk_list import DIGEST_BYTES, ChunkList, ChunkListBuilder

__all__ = [
    "CHUNK_FIELDS",
    "NOT_THE_FAST_PATH",
    "PLACEHOLDER",
    "ROWS_AT_ONCE",
    "ROWS_KEY",
    "ROW_BYTES_AT_ONCE",
    "add_rows",
    "canonical",
    "encoded_rows",
    "refuse_constant",
    "rows_length",
]

#: The names of a chunk row's fields, in order (the body's ``chunk_fields``).
CHUNK_FIELDS: Final = ("offset", "length", "sha256", "codec", "stored_length")

#: Stands for the chunk rows in `Manifest.to_json` (no manifest field can hold it: a
#: label or stat value would be one JSON string among others, and this one is unique).
PLACEHOLDER: Final = "\x00pieceworks-chunk-rows-4f0b8d2c9e6a4c1b"
#: Chunk rows `encoded_rows` encodes at a time.
ROWS_AT_ONCE: Final = 4096
#: About the bytes of JSON `Manifest._from_json_in_batches` parses at a time (some 4,000 rows).
ROW_BYTES_AT_ONCE: Final = 400_000
#: Where the body's chunk rows start in a manifest's JSON (its keys are sorted: after
#: ``"chunk_size"``; no string can hold it, a quote in one being escaped).
ROWS_KEY: Final = b'"chunks":['
#: What makes `Manifest._from_json_in_batches` leave a document to the whole parse.
NOT_THE_FAST_PATH: Final = (
    ValueError,
    TypeError,
    KeyError,
    RecursionError,
    UnicodeDecodeError,
    OverflowError,
)


def encoded_rows(chunks: ChunkList) -> Iterator[bytes]:
    """The canonical JSON of the chunk rows' list, in pieces: ``[``, rows, ``,``..., ``]``.

    Straight from the columns: ``[offset,length,"<hex digest>",<codec as a JSON
    string>,stored_length]``, exactly what ``json.dumps`` makes of the row
    (ints in decimal, a hex digest needs no escaping, the codec name is
    encoded by `canonical` itself).
    """
    names = [canonical(name) for name in chunks.codec_names()]
    offsets, lengths, stored = chunks.offsets(), chunks.lengths(), chunks.stored_lengths()
    codecs, digests = chunks.codec_indexes(), chunks.digests_blob()
    yield b"["
    for start in range(0, len(chunks), ROWS_AT_ONCE):
        stop = min(start + ROWS_AT_ONCE, len(chunks))
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


def rows_length(chunks: ChunkList) -> int:
    """The length of `encoded_rows`'s bytes, counted from the columns without encoding.

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
        len(canonical(name)) * indexes.count(i) for i, name in enumerate(chunks.codec_names())
    )
    return 2 + (n - 1) + 72 * n + digits + codecs


def canonical(obj: object) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def refuse_constant(name: str) -> object:
    """JSON's non-standard NaN, Infinity and -Infinity are damage, not numbers."""
    raise ValueError(f"{name} is not a JSON number")


def add_rows(builder: ChunkListBuilder, rows: object) -> None:
    """Append the chunk `rows` of a manifest body; `ValueError` naming the first bad one."""
    if not isinstance(rows, list):
        raise ValueError(f"malformed chunk rows {type(rows).__name__}")
    for row in rows:
        if not isinstance(row, list) or len(row) != len(CHUNK_FIELDS):
            raise ValueError(f"malformed chunk entry {row!r}")
        offset, length, digest, codec, stored = row
        if not (is_int(offset) and is_int(length) and is_int(stored)):
            raise ValueError(f"chunk at offset {offset!r}: offset and lengths must be ints")
        if stored < 0:
            raise ValueError(f"chunk at offset {offset} has a negative stored length")
        if offset < 0 or length < 0:
            raise ValueError(f"chunk at offset {offset} has a negative offset or length")
        builder.add(offset, length, digest, codec, stored)
