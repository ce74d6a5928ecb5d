"""`ChunkList`: a backup's chunk refs in columns, about 57 bytes a chunk.

A backup of 1 TiB in 4 MiB chunks lists 262,144 chunks. Held as a tuple of
`ChunkRef` (a slots object, a 64-character hex string and three ints) that
costs about 300 bytes a chunk; as rows of JSON lists about 100 more. A
`ChunkList` holds the same values in five columns: offset, length and
stored length as unsigned 64-bit ints (`array('Q')`), the digest as its 32
binary bytes, the codec as a one-byte index into a small table of names.
It is a `collections.abc.Sequence[ChunkRef]`: indexing and iterating make a
`ChunkRef` only when an item is read, so code that loops over a backup's
chunks works unchanged; slicing gives a `ChunkList`.

Digests must be 64 lowercase hex digits: a hex sha256, or in an encrypted
store a keyed HMAC-SHA256 (`pieceworks.protocols.encryption`), both 32
bytes. Anything else raises `ValueError` (naming the chunk's offset) rather
than being stored in a form that would not give it back.

Persisted form (`to_json` / `chunk_list_from_json`), about 50 bytes of
JSON a chunk: a JSON object ``{"form": "columns", "count": N, "codecs":
[name, ...], "digests": D, "numbers": Z}`` where ``D`` is the base64 of the
N 32-byte digests one after another, and ``Z`` the base64 of the zlib
stream of N offset steps (each offset minus the one before, the first minus
0, modulo 2**64), N lengths and N stored lengths (each an 8-byte
little-endian unsigned int) and N 1-byte indexes into ``codecs``: the steps
and lengths of a backup repeat, so they take almost nothing. The reader
also accepts the rows form of `pieceworks.protocols.values.chunks_to_json`,
which results persisted by earlier versions hold.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import re
import sys
import zlib
from array import array
from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from typing import Any, Final, overload

from pieceworks.protocols.values import ChunkRef, chunks_from_json

__all__ = [
    "DIGEST_BYTES",
    "ChunkList",
    "ChunkListBuilder",
    "ChunksByOffset",
    "chunk_list_from_json",
    "digest_bytes",
]

#: Bytes of a binary digest (sha256 or HMAC-SHA256).
DIGEST_BYTES: Final = 32
_FORM: Final = "columns"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_CODECS: Final = 256
_LITTLE = sys.byteorder == "little"
_U64: Final = (1 << 64) - 1


def digest_bytes(digest: object, offset: object = None) -> bytes:
    """The 32 bytes of a hex `digest`; `ValueError` unless it is 64 lowercase hex digits.

    `offset` (the chunk's, if known) is named in the message.
    """
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        where = "" if offset is None else f"chunk at offset {offset} has "
        raise ValueError(
            f"{where}an invalid digest {digest!r}: expected 64 lowercase hex digits"
            " (a sha256 or HMAC-SHA256)"
        )
    return bytes.fromhex(digest)


def _uint(name: str, value: object, offset: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise ValueError(
            f"chunk at offset {offset!r}: {name} must be an int from 0 to 2**64-1, not {value!r}"
        )
    return value


class ChunkListBuilder:
    """Appends chunk refs to columns; `build` hands them to a `ChunkList` (no copy).

    Not thread-safe: one thread appends. After `build` the builder is spent
    (appending raises `RuntimeError`), so the list it built stays immutable.
    """

    __slots__ = ("_codecs", "_digests", "_lengths", "_names", "_offsets", "_spent", "_stored")

    def __init__(self) -> None:
        self._offsets = array("Q")
        self._lengths = array("Q")
        self._stored = array("Q")
        self._digests = bytearray()
        self._codecs = bytearray()
        self._names: dict[str, int] = {}
        self._spent = False

    def __len__(self) -> int:
        return len(self._offsets)

    def append(self, ref: ChunkRef) -> None:
        """Add `ref` at the end; `ValueError` if a field cannot be held (see the module)."""
        self.add(ref.offset, ref.length, ref.digest, ref.codec, ref.stored_length)

    def add(self, offset: int, length: int, digest: str, codec: str, stored_length: int) -> None:
        """Add one chunk by its fields (as `append`, without making a `ChunkRef`)."""
        self.add_binary(offset, length, digest_bytes(digest, offset), codec, stored_length)

    def add_binary(
        self, offset: int, length: int, digest: bytes, codec: str, stored_length: int
    ) -> None:
        """Add one chunk whose digest is already its 32 bytes."""
        if self._spent:
            raise RuntimeError("this ChunkListBuilder has built its list already")
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"chunk at offset {offset!r}: a binary digest is 32 bytes")
        index = self._names.get(codec)
        if index is None:
            if not isinstance(codec, str):
                raise ValueError(f"chunk at offset {offset!r}: codec {codec!r} is not a string")
            if len(self._names) >= _MAX_CODECS:
                raise ValueError(f"more than {_MAX_CODECS} codec names in one chunk list")
            index = self._names[codec] = len(self._names)
        self._offsets.append(_uint("offset", offset, offset))
        self._lengths.append(_uint("length", length, offset))
        self._stored.append(_uint("stored length", stored_length, offset))
        self._digests += digest
        self._codecs.append(index)

    def extend(self, refs: Iterable[ChunkRef]) -> None:
        """`append` each of `refs` (`ValueError` if one is not a `ChunkRef`)."""
        for ref in refs:
            if not isinstance(ref, ChunkRef):
                raise ValueError(f"chunk {ref!r} is not a ChunkRef")
            self.add(ref.offset, ref.length, ref.digest, ref.codec, ref.stored_length)

    def build(self) -> ChunkList:
        """The chunks appended so far, as an immutable `ChunkList`; the builder is spent."""
        self._spent = True
        return ChunkList._of_columns(
            self._offsets,
            self._lengths,
            self._stored,
            self._digests,
            self._codecs,
            tuple(self._names),
        )


class ChunkList(Sequence[ChunkRef]):
    """An immutable sequence of `ChunkRef`, held in columns (see the module).

    ``ChunkList(refs)`` copies any iterable of `ChunkRef`; `ChunkList.of`
    returns a `ChunkList` as it is. Equal to another `ChunkList`, or to a
    tuple, with the same refs in the same order (as the tuple it replaces
    was), and hashed as that tuple would be.
    """

    __slots__ = ("_codecs", "_digests", "_lengths", "_names", "_offsets", "_stored")

    _offsets: array[int]
    _lengths: array[int]
    _stored: array[int]
    _digests: bytes | bytearray
    _codecs: bytes | bytearray
    _names: tuple[str, ...]

    def __init__(self, refs: Iterable[ChunkRef] = ()) -> None:
        builder = ChunkListBuilder()
        builder.extend(refs)
        built = builder.build()
        self._set(
            built._offsets,
            built._lengths,
            built._stored,
            built._digests,
            built._codecs,
            built._names,
        )

    def _set(
        self,
        offsets: array[int],
        lengths: array[int],
        stored: array[int],
        digests: bytes | bytearray,
        codecs: bytes | bytearray,
        names: tuple[str, ...],
    ) -> None:
        self._offsets, self._lengths, self._stored = offsets, lengths, stored
        self._digests, self._codecs, self._names = digests, codecs, names

    @classmethod
    def _of_columns(
        cls,
        offsets: array[int],
        lengths: array[int],
        stored: array[int],
        digests: bytes | bytearray,
        codecs: bytes | bytearray,
        names: tuple[str, ...],
    ) -> ChunkList:
        new = cls.__new__(cls)
        new._set(offsets, lengths, stored, digests, codecs, names)
        return new

    @classmethod
    def of(cls, chunks: Iterable[ChunkRef]) -> ChunkList:
        """`chunks` itself if it is a `ChunkList`, else a `ChunkList` of its refs."""
        return chunks if isinstance(chunks, ChunkList) else cls(chunks)

    # -- Sequence --

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> ChunkRef: ...

    @overload
    def __getitem__(self, index: slice) -> ChunkList: ...

    def __getitem__(self, index: int | slice) -> ChunkRef | ChunkList:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return ChunkList(self[i] for i in range(start, stop, step))
            stop = max(start, stop)
            return ChunkList._of_columns(
                self._offsets[start:stop],
                self._lengths[start:stop],
                self._stored[start:stop],
                self._digests[start * DIGEST_BYTES : stop * DIGEST_BYTES],
                self._codecs[start:stop],
                self._names,
            )
        i = index.__index__()
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("ChunkList index out of range")
        return ChunkRef(
            self._offsets[i],
            self._lengths[i],
            self._digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES].hex(),
            self._names[self._codecs[i]],
            self._stored[i],
        )

    def __iter__(self) -> Iterator[ChunkRef]:
        names, digests = self._names, self._digests
        for i, (offset, length, stored, codec) in enumerate(
            zip(self._offsets, self._lengths, self._stored, self._codecs, strict=True)
        ):
            yield ChunkRef(
                offset,
                length,
                digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES].hex(),
                names[codec],
                stored,
            )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChunkList):
            return (
                self._offsets == other._offsets
                and self._lengths == other._lengths
                and self._stored == other._stored
                and self._digests == other._digests
                and self.codecs() == other.codecs()
            )
        if isinstance(other, tuple):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"ChunkList({list(self)!r})"

    # -- columns (fast paths that make no ChunkRef) --

    def offsets(self) -> Sequence[int]:
        """Each chunk's offset (bytes), in order: a read-only view, no copy."""
        return memoryview(self._offsets).toreadonly()

    def lengths(self) -> Sequence[int]:
        """Each chunk's plain length (bytes), in order: a read-only view."""
        return memoryview(self._lengths).toreadonly()

    def stored_lengths(self) -> Sequence[int]:
        """Each chunk's stored object size (bytes), in order: a read-only view."""
        return memoryview(self._stored).toreadonly()

    def codecs(self) -> list[str]:
        """Each chunk's codec name, in order (one shared str per name)."""
        names = self._names
        return [names[i] for i in self._codecs]

    def codec_names(self) -> tuple[str, ...]:
        """The table `codec_indexes` indexes (at most 256 names; a slice may not use all)."""
        return self._names

    def codec_indexes(self) -> Sequence[int]:
        """Each chunk's codec as an index into `codec_names`: a read-only view."""
        return memoryview(self._codecs).toreadonly()

    def digest_at(self, index: int) -> bytes:
        """The 32 bytes of chunk `index`'s digest."""
        i = range(len(self))[index]
        return bytes(self._digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES])

    def hex_digests(self) -> Iterator[str]:
        """Each chunk's hex digest, in order."""
        digests = self._digests
        for i in range(len(self)):
            yield digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES].hex()

    def objects(self) -> Iterator[tuple[bytes, str, int, int]]:
        """``(32-byte digest, codec, stored length, offset)`` of each chunk, in order."""
        names, digests = self._names, self._digests
        for i, (codec, stored, offset) in enumerate(
            zip(self._codecs, self._stored, self._offsets, strict=True)
        ):
            yield (
                bytes(digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES]),
                names[codec],
                stored,
                offset,
            )

    def by_offset(self) -> ChunksByOffset:
        """The chunks as a mapping from offset (they must be sorted by it, as a manifest's)."""
        return ChunksByOffset(self)

    def digests_blob(self) -> bytes | bytearray:
        """Every digest's 32 bytes, one after another (read it, never change it)."""
        return self._digests

    # -- persisted form --

    def to_json(self) -> dict[str, Any]:
        """The persisted form (see the module): a JSON-serialisable dict, base64 columns."""
        offsets = self._offsets
        steps = array("Q", [offsets[0]] if offsets else [])
        steps.extend(map(_step, offsets[1:], offsets))
        numbers = zlib.compressobj(1)
        packed = b"".join(
            numbers.compress(column)
            for column in (_le(steps), _le(self._lengths), _le(self._stored), self._codecs)
        )
        return {
            "form": _FORM,
            "count": len(self),
            "codecs": list(self._names),
            "digests": _b64(self._digests),
            "numbers": _b64(packed + numbers.flush()),
        }


class ChunksByOffset(Mapping[int, ChunkRef]):
    """A `ChunkList` sorted by offset, read as ``{offset: ChunkRef}`` without a dict.

    A lookup bisects the offsets; iterating (keys, items, values) goes in
    offset order, making one `ChunkRef` at a time. About nothing beyond the
    list, where a dict of the refs of 262,144 chunks took about 80 MiB.
    """

    __slots__ = ("_chunks", "_offsets")

    def __init__(self, chunks: ChunkList) -> None:
        self._chunks = chunks
        self._offsets = chunks.offsets()

    @property
    def chunk_list(self) -> ChunkList:
        """The chunks, in offset order."""
        return self._chunks

    def __getitem__(self, offset: int) -> ChunkRef:
        i = bisect.bisect_left(self._offsets, offset)
        if i < len(self._offsets) and self._offsets[i] == offset:
            return self._chunks[i]
        raise KeyError(offset)

    def __iter__(self) -> Iterator[int]:
        return iter(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def items(self) -> ItemsView[int, ChunkRef]:
        return _OrderedItems(self)

    def values(self) -> ValuesView[ChunkRef]:
        return _OrderedValues(self)


class _OrderedItems(ItemsView[int, ChunkRef]):
    _mapping: ChunksByOffset

    def __iter__(self) -> Iterator[tuple[int, ChunkRef]]:
        for ref in self._mapping.chunk_list:
            yield ref.offset, ref


class _OrderedValues(ValuesView[ChunkRef]):
    _mapping: ChunksByOffset

    def __iter__(self) -> Iterator[ChunkRef]:
        return iter(self._mapping.chunk_list)


def chunk_list_from_json(value: object) -> ChunkList:
    """A `ChunkList` from `ChunkList.to_json`'s form or from `chunks_to_json` rows.

    `ValueError` if `value` is neither, or malformed.
    """
    if isinstance(value, ChunkList):
        return value
    if isinstance(value, list):
        return ChunkList(chunks_from_json(value))
    if not isinstance(value, dict) or value.get("form") != _FORM:
        raise ValueError("chunks: expected a list of rows or a columns object")
    count, names = value.get("count"), value.get("codecs")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"chunks: bad count {count!r}")
    if (
        not isinstance(names, list)
        or len(names) > _MAX_CODECS
        or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(f"chunks: bad codec names {names!r}")
    digests = _unb64(value, "digests", count * DIGEST_BYTES)
    packed = _unb64(value, "numbers", None)
    try:
        numbers = zlib.decompress(packed)
    except zlib.error as exc:
        raise ValueError(f"chunks: numbers are not a zlib stream ({exc})") from None
    del packed
    if len(numbers) != 25 * count:
        raise ValueError(f"chunks: numbers hold {len(numbers)} bytes, expected {25 * count}")
    columns = []
    for k in range(3):
        column = array("Q", numbers[8 * k * count : 8 * (k + 1) * count])
        if not _LITTLE:
            column.byteswap()
        columns.append(column)
    codecs = numbers[24 * count :]
    del numbers
    if codecs and max(codecs) >= len(names):
        raise ValueError("chunks: a codec index beyond the codec names")
    steps, lengths, stored = columns
    offsets = array("Q", itertools.accumulate(steps, _add))
    return ChunkList._of_columns(offsets, lengths, stored, digests, codecs, tuple(names))


def _step(offset: int, before: int) -> int:
    return (offset - before) & _U64


def _add(offset: int, step: int) -> int:
    return (offset + step) & _U64


def _le(column: array[int]) -> bytes | memoryview:
    """The column's bytes, little-endian (a view of them on a little-endian machine)."""
    if _LITTLE:
        return memoryview(column).cast("B")
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped.tobytes()


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: dict[str, Any], key: str, size: int | None) -> bytes:
    raw = value.get(key)
    if not isinstance(raw, str):
        raise ValueError(f"chunks: {key} must be a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"chunks: {key} is not base64 ({exc})") from None
    if size is not None and len(data) != size:
        raise ValueError(f"chunks: {key} holds {len(data)} bytes, expected {size}")
    return data
