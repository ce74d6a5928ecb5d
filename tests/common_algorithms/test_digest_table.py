"""DigestTable: the backup pipeline's digest -> (codec, stored length) lookup."""

from __future__ import annotations

import hashlib

import pytest

from pieceworks.common_algorithms.format.digest_table import DigestTable
from pieceworks.protocols.chunk_list import ChunkList, ChunkListBuilder


def digest(i: int) -> bytes:
    return hashlib.sha256(b"%d" % i).digest()


def test_what_is_put_is_found_and_nothing_else() -> None:
    table = DigestTable()
    for i in range(5000):  # grows its slots many times over
        table.put(digest(i), ("zstd", "none")[i % 2], 100 + i)
    assert len(table) == 5000
    assert all(table.get(digest(i)) == (("zstd", "none")[i % 2], 100 + i) for i in range(5000))
    assert table.get(digest(5000)) is None
    assert digest(7) in table and digest(-1) not in table and "x" not in table


def test_put_again_replaces_without_a_new_entry() -> None:
    table = DigestTable()
    table.put(digest(1), "zstd", 10)
    table.put(digest(1), "zlib", 20)
    assert len(table) == 1 and table.get(digest(1)) == ("zlib", 20)


def test_digests_that_share_their_first_bytes_are_told_apart() -> None:
    """The first 8 bytes are the hash: equal ones collide and are probed past."""
    table = DigestTable()
    same = [b"\x01" * 8 + bytes([i]) * 24 for i in range(200)]
    for i, d in enumerate(same):
        table.put(d, "zstd", i)
    assert [table.get(d) for d in same] == [("zstd", i) for i in range(200)]
    assert table.get(b"\x01" * 8 + b"\xff" * 24) is None


def test_hex_digests_lists_entries_in_the_order_they_were_put() -> None:
    table = DigestTable()
    for i in range(10):
        table.put(digest(i), "zstd", i)
    table.put(digest(3), "zstd", 99)  # a replacement is not a new entry
    assert list(table.hex_digests(7)) == [digest(i).hex() for i in (7, 8, 9)]
    assert list(table.hex_digests()) == [digest(i).hex() for i in range(10)]


def test_a_digest_is_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DigestTable().put(b"short", "zstd", 1)


def _list(indexes: range, stored: int = 7, codec: str = "zlib") -> ChunkList:
    builder = ChunkListBuilder()
    for n, i in enumerate(indexes):
        builder.add_binary(n * 10, 10, digest(i), codec, stored + i)
    return builder.build()


def test_a_list_is_indexed_in_place_beside_own_entries() -> None:
    """add_list: the chunks of a ChunkList are found (codec, stored length) without copies;
    own entries go on beside them, and growing keeps both."""
    table = DigestTable()
    table.put(digest(-1), "zstd", 1)
    table.add_list(_list(range(3000)))
    for i in range(3000, 4000):
        table.put(digest(i), "none", i)
    assert len(table) == 4001 and table.own == 1001
    assert table.get(digest(5)) == ("zlib", 12) and table.get(digest(3500)) == ("none", 3500)
    assert table.get(digest(-1)) == ("zstd", 1) and table.get(digest(4000)) is None
    assert list(table.hex_digests(1)) == [digest(i).hex() for i in range(3000, 4000)]


def test_the_last_source_of_a_digest_wins_and_skipped_ones_are_left_out() -> None:
    table = DigestTable()
    table.put(digest(1), "zstd", 1)
    table.add_list(_list(range(5)), skip={digest(3).hex()})
    assert table.get(digest(1)) == ("zlib", 8)  # the list came later
    assert digest(3) not in table and len(table) == 4
    table.add_list(_list(range(2), stored=100, codec="none"))
    assert table.get(digest(1)) == ("none", 101) and len(table) == 4
    table.put(digest(0), "zstd", 5)  # an own entry replaces a listed one too
    assert table.get(digest(0)) == ("zstd", 5) and table.own == 2
