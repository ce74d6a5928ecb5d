"""`DigestTable`: digest -> (codec, stored length), about 50 bytes an entry.

A backup looks up every chunk it hashes among the chunks already stored (its
parent's, and those it stored itself) so as not to store one twice. A dict
of hex strings to `ChunkRef` costs about 300 bytes an entry: 80 MiB for
the 262,144 chunks of 1 TiB in 4 MiB chunks. This table holds the 32-byte
digests in one bytearray beside two columns, and finds them by open
addressing (linear probing) in an `array` of entry numbers whose size is a
power of two at least twice the entries: 41 bytes an entry plus 8 to 16 of
slots. Digests are sha256 or HMAC-SHA256 values, uniformly spread, so their
first 8 bytes serve as the hash.

Not thread-safe: callers hold their own lock (the backup pipeline does).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Final

from pieceworks.protocols.chunk_list import DIGEST_BYTES

__all__ = ["DigestTable"]

_MIN_SLOTS: Final = 64


class DigestTable:
    """A map from 32-byte digests to ``(codec, stored_length)``; see the module."""

    __slots__ = ("_codec_index", "_codecs", "_digests", "_mask", "_names", "_slots", "_stored")

    def __init__(self) -> None:
        self._digests = bytearray()
        self._stored = array("Q")
        self._codecs = bytearray()
        self._names: list[str] = []
        self._codec_index: dict[str, int] = {}
        self._slots = array("i", bytes(4 * _MIN_SLOTS))  # entry number + 1; 0: empty
        self._mask = _MIN_SLOTS - 1

    def __len__(self) -> int:
        return len(self._stored)

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, bytes) and self._find(digest)[1] >= 0

    def get(self, digest: bytes) -> tuple[str, int] | None:
        """``(codec, stored_length)`` of `digest`, or None if it is not in the table."""
        entry = self._find(digest)[1]
        if entry < 0:
            return None
        return self._names[self._codecs[entry]], self._stored[entry]

    def put(self, digest: bytes, codec: str, stored_length: int) -> None:
        """Record (or replace) `digest`'s codec and stored length.

        A new digest becomes entry number ``len(table)`` (see `hex_digests`).
        """
        if len(digest) != DIGEST_BYTES:
            raise ValueError("a digest is 32 bytes")
        code = self._codec_index.get(codec)
        if code is None:
            if len(self._names) >= 256:
                raise ValueError("more than 256 codec names")
            code = self._codec_index[codec] = len(self._names)
            self._names.append(codec)
        slot, entry = self._find(digest)
        if entry >= 0:
            self._stored[entry] = stored_length
            self._codecs[entry] = code
            return
        self._stored.append(stored_length)
        self._codecs.append(code)
        self._digests += digest
        self._slots[slot] = len(self._stored)
        if 2 * len(self._stored) > len(self._slots):
            self._grow()

    def hex_digests(self, start: int = 0) -> Iterator[str]:
        """The hex digest of each entry from number `start` on, in the order they were put."""
        for entry in range(start, len(self._stored)):
            yield self._digests[entry * DIGEST_BYTES : (entry + 1) * DIGEST_BYTES].hex()

    def _digest(self, entry: int) -> bytes:
        return bytes(self._digests[entry * DIGEST_BYTES : (entry + 1) * DIGEST_BYTES])

    def _find(self, digest: bytes) -> tuple[int, int]:
        """(slot, entry) of `digest`, or (the empty slot it would take, -1)."""
        slots, mask, digests = self._slots, self._mask, self._digests
        i = int.from_bytes(digest[:8], "little") & mask
        while True:
            n = slots[i]
            if not n:
                return i, -1
            start = (n - 1) * DIGEST_BYTES
            if digests[start : start + DIGEST_BYTES] == digest:
                return i, n - 1
            i = (i + 1) & mask

    def _free_slot(self, digest: bytes) -> int:
        slots, mask = self._slots, self._mask
        i = int.from_bytes(digest[:8], "little") & mask
        while slots[i]:
            i = (i + 1) & mask
        return i

    def _grow(self) -> None:
        size = len(self._slots) * 2
        self._slots = array("i", bytes(4 * size))
        self._mask = size - 1
        for entry in range(len(self._stored)):  # entries are never removed: all live
            self._slots[self._free_slot(self._digest(entry))] = entry + 1
