"""`DigestTable`: digest -> (codec, stored length), about 50 bytes an entry.

A backup looks up every chunk it hashes among the chunks already stored (its
parent's, and those it stored itself) so as not to store one twice. A dict
of hex strings to `ChunkRef` costs about 300 bytes an entry: 80 MiB for
the 262,144 chunks of 1 TiB in 4 MiB chunks. This table finds digests by
open addressing (linear probing) in an `array` of slots whose size is a
power of two at least twice the entries (8 to 16 bytes an entry). A slot
names either an entry of the table's own (`put`: the 32-byte digest in one
bytearray beside two columns, 41 bytes an entry) or a chunk of a
`ChunkList` it indexes in place (`add_list`: a parent's chunks, whose
columns are read, not copied). Digests are sha256 or HMAC-SHA256 values,
uniformly spread, so their first 8 bytes serve as the hash.

Not thread-safe: callers hold their own lock (the backup pipeline does).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Container, Iterator
from typing import Final

from pieceworks.protocols.chunk_list import DIGEST_BYTES, ChunkList

__all__ = ["DigestTable"]

_MIN_SLOTS: Final = 64


class DigestTable:
    """A map from 32-byte digests to ``(codec, stored_length)``; see the module.

    A slot holds 0 (empty), ``n + 1`` for the table's own entry ``n``, or
    ``-(k + 1)`` for chunk ``k`` of the lists indexed, counted across them
    in the order they were added.
    """

    __slots__ = (
        "_codec_index",
        "_codecs",
        "_digests",
        "_lists",
        "_live",
        "_mask",
        "_names",
        "_slots",
        "_starts",
        "_stored",
    )

    def __init__(self) -> None:
        self._digests = bytearray()
        self._stored = array("Q")
        self._codecs = bytearray()
        self._names: list[str] = []
        self._codec_index: dict[str, int] = {}
        self._lists: list[ChunkList] = []
        self._starts: list[int] = []  # the first chunk number of each list
        self._live = 0  # slots in use
        self._slots = array("i", bytes(4 * _MIN_SLOTS))
        self._mask = _MIN_SLOTS - 1

    def __len__(self) -> int:
        """The digests the table holds (each once)."""
        return self._live

    @property
    def own(self) -> int:
        """How many entries `put` added (see `hex_digests`)."""
        return len(self._stored)

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, bytes) and self._find(digest)[1] != 0

    def get(self, digest: bytes) -> tuple[str, int] | None:
        """``(codec, stored_length)`` of `digest`, or None if it is not in the table."""
        value = self._find(digest)[1]
        if value > 0:
            entry = value - 1
            return self._names[self._codecs[entry]], self._stored[entry]
        if value < 0:
            chunks, i = self._chunk(-value - 1)
            return chunks.codec_names()[chunks.codec_indexes()[i]], chunks.stored_lengths()[i]
        return None

    def put(self, digest: bytes, codec: str, stored_length: int) -> None:
        """Record (or replace) `digest`'s codec and stored length as an entry of its own.

        A new one becomes own entry number ``own`` (see `hex_digests`).
        """
        if len(digest) != DIGEST_BYTES:
            raise ValueError("a digest is 32 bytes")
        code = self._codec_index.get(codec)
        if code is None:
            if len(self._names) >= 256:
                raise ValueError("more than 256 codec names")
            code = self._codec_index[codec] = len(self._names)
            self._names.append(codec)
        slot, value = self._find(digest)
        if value > 0:
            self._stored[value - 1] = stored_length
            self._codecs[value - 1] = code
            return
        self._stored.append(stored_length)
        self._codecs.append(code)
        self._digests += digest
        self._occupy(slot, value, len(self._stored))

    def add_list(self, chunks: ChunkList, skip: Container[str] = ()) -> None:
        """Index every chunk of `chunks` in place: its columns are read, never copied.

        A digest already in the table (or listed twice) now means the last
        chunk that has it, as `put` replaces; hex digests in `skip` are left
        out. `chunks` must stay as it is (a `ChunkList` does).
        """
        first = self._starts[-1] + len(self._lists[-1]) if self._lists else 0
        self._lists.append(chunks)
        self._starts.append(first)
        blob = chunks.digests_blob()
        for i in range(len(chunks)):
            digest = bytes(blob[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES])
            if skip and digest.hex() in skip:
                continue
            slot, value = self._find(digest)
            self._occupy(slot, value, -(first + i + 1))

    def hex_digests(self, start: int = 0) -> Iterator[str]:
        """The hex digest of each own entry from number `start` on, in the order put."""
        for entry in range(start, len(self._stored)):
            yield self._digests[entry * DIGEST_BYTES : (entry + 1) * DIGEST_BYTES].hex()

    def _occupy(self, slot: int, old: int, value: int) -> None:
        """Set `slot` (which held `old`) to `value`, growing the slots if need be."""
        self._slots[slot] = value
        if not old:
            self._live += 1
            if 2 * self._live > len(self._slots):
                self._grow()

    def _chunk(self, k: int) -> tuple[ChunkList, int]:
        """The list indexed and the position in it of chunk number `k`."""
        j = bisect.bisect_right(self._starts, k) - 1
        return self._lists[j], k - self._starts[j]

    def _digest(self, value: int) -> bytes | bytearray:
        if value > 0:
            start = (value - 1) * DIGEST_BYTES
            return self._digests[start : start + DIGEST_BYTES]
        chunks, i = self._chunk(-value - 1)
        return chunks.digests_blob()[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES]

    def _find(self, digest: bytes) -> tuple[int, int]:
        """(slot, its value) of `digest`, or (the empty slot it would take, 0)."""
        slots, mask, digests = self._slots, self._mask, self._digests
        i = int.from_bytes(digest[:8], "little") & mask
        while True:
            value = slots[i]
            if not value:
                return i, 0
            if value > 0:
                start = (value - 1) * DIGEST_BYTES
                if digests[start : start + DIGEST_BYTES] == digest:
                    return i, value
            elif self._digest(value) == digest:
                return i, value
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        size = len(old) * 2
        self._slots = slots = array("i", bytes(4 * size))
        self._mask = mask = size - 1
        for value in old:
            if value:
                i = int.from_bytes(self._digest(value)[:8], "little") & mask
                while slots[i]:
                    i = (i + 1) & mask
                slots[i] = value
