"""ChunkList: a backup's chunk refs in columns, read back as ChunkRef."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Sequence

import pytest

from pieceworks.protocols import ChunkRef
from pieceworks.protocols.chunk_list import (
    ChunkList,
    ChunkListBuilder,
    ChunksByOffset,
    chunk_list_from_json,
)
from pieceworks.protocols.values import chunks_to_json

CS = 4 << 20


def digest(i: int) -> str:
    return hashlib.sha256(b"%d" % i).hexdigest()


def refs(count: int) -> tuple[ChunkRef, ...]:
    codecs = ("zstd", "zlib", "none")
    return tuple(ChunkRef(i * CS, CS, digest(i), codecs[i % 3], 1000 + 7 * i) for i in range(count))


def test_it_is_a_sequence_of_the_refs_it_was_made_of() -> None:
    """Indexing, iterating, len, reversed, index and `in` give the ChunkRefs put in."""
    chunks = refs(10)
    listed = ChunkList(chunks)
    assert isinstance(listed, Sequence)
    assert len(listed) == 10
    assert tuple(listed) == chunks
    assert listed[0] == chunks[0] and listed[-1] == chunks[-1] and listed[3] == chunks[3]
    assert list(reversed(listed)) == list(reversed(chunks))
    assert listed.index(chunks[4]) == 4 and chunks[7] in listed
    with pytest.raises(IndexError):
        listed[10]
    with pytest.raises(IndexError):
        listed[-11]


def test_it_equals_the_tuple_it_replaces_and_hashes_as_it() -> None:
    """Equal to a ChunkList or a tuple of the same refs, hashed as that tuple; not to a list."""
    chunks = refs(5)
    listed = ChunkList(chunks)
    assert listed == ChunkList(chunks) and listed == chunks and chunks == listed
    assert hash(listed) == hash(chunks)
    assert listed != ChunkList(chunks[:4]) and listed != chunks[:4]
    assert listed != ChunkList((*chunks[:4], ChunkRef(4 * CS, CS, digest(4), "zstd", 1)))
    assert listed != list(chunks)
    assert ChunkList() == () and len(ChunkList()) == 0


@pytest.mark.parametrize("part", [slice(2, 6), slice(None, 3), slice(-3, None), slice(5, 2)])
def test_slices_are_chunk_lists_of_the_same_refs(part: slice) -> None:
    chunks = refs(8)
    sliced = ChunkList(chunks)[part]
    assert isinstance(sliced, ChunkList)
    assert sliced == chunks[part]


def test_a_stepped_slice_works_too() -> None:
    chunks = refs(8)
    assert ChunkList(chunks)[::3] == chunks[::3]
    assert ChunkList(chunks)[::-1] == chunks[::-1]


def test_columns_give_the_values_without_refs() -> None:
    chunks = refs(6)
    listed = ChunkList(chunks)
    assert list(listed.offsets()) == [c.offset for c in chunks]
    assert list(listed.lengths()) == [c.length for c in chunks]
    assert list(listed.stored_lengths()) == [c.stored_length for c in chunks]
    assert listed.codecs() == [c.codec for c in chunks]
    assert list(listed.hex_digests()) == [c.digest for c in chunks]
    assert listed.digest_at(2) == bytes.fromhex(chunks[2].digest)
    assert [listed.codec_names()[i] for i in listed.codec_indexes()] == listed.codecs()


def test_of_keeps_a_chunk_list_and_converts_anything_else() -> None:
    listed = ChunkList(refs(3))
    assert ChunkList.of(listed) is listed
    assert ChunkList.of(list(refs(3))) == listed
    assert ChunkList.of(iter(refs(3))) == listed


def test_the_builder_appends_and_is_spent_by_build() -> None:
    builder = ChunkListBuilder()
    for ref in refs(3):
        builder.append(ref)
    builder.add(3 * CS, 12, digest(3), "zstd", 20)
    assert len(builder) == 4
    built = builder.build()
    assert built == (*refs(3), ChunkRef(3 * CS, 12, digest(3), "zstd", 20))
    with pytest.raises(RuntimeError, match="built its list already"):
        builder.append(refs(1)[0])
    assert len(built) == 4  # the list did not change


@pytest.mark.parametrize(
    "bad",
    [
        "xyz",
        digest(1).upper(),  # bytes.fromhex would take it, and give back lowercase
        digest(1)[:62],
        digest(1) + "00",
        " " + digest(1)[1:],
        hashlib.sha512(b"x").hexdigest(),
        "g" * 64,
        42,
        None,
    ],
)
def test_a_digest_that_is_not_64_lowercase_hex_digits_is_refused(bad: object) -> None:
    """Only what round-trips through 32 bytes is held: anything else is a clear ValueError."""
    with pytest.raises(ValueError, match="chunk at offset 8 has an invalid digest"):
        ChunkList([ChunkRef(8, 1, bad, "zstd", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (ChunkRef(-1, 1, digest(1), "zstd", 1), "offset must be an int"),
        (ChunkRef(0, 1.5, digest(1), "zstd", 1), "length must be an int"),  # type: ignore[arg-type]
        (ChunkRef(0, 1, digest(1), "zstd", True), "stored length must be an int"),
        (ChunkRef(0, 1, digest(1), 5, 1), "codec 5 is not a string"),  # type: ignore[arg-type]
        (ChunkRef(1 << 64, 1, digest(1), "zstd", 1), "offset must be an int"),
    ],
)
def test_fields_that_cannot_be_held_are_refused(ref: ChunkRef, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChunkList([ref])


def test_something_not_a_chunk_ref_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a ChunkRef"):
        ChunkList([(0, 1, digest(1), "zstd", 1)])  # type: ignore[list-item]


@pytest.mark.parametrize("count", [0, 1, 2, 1000])
def test_the_persisted_form_round_trips_through_json(count: int) -> None:
    """to_json is JSON-serialisable (base64 columns) and reads back equal."""
    listed = ChunkList(refs(count))
    text = json.dumps(listed.to_json())
    back = chunk_list_from_json(json.loads(text))
    assert back == listed and tuple(back) == refs(count)


def test_the_persisted_form_is_small() -> None:
    """About 50 bytes of JSON a chunk (base64 of the digests, and numbers that repeat
    compressed), where rows took about 100."""
    listed = ChunkList(refs(1000))
    columns = len(json.dumps(listed.to_json()))
    rows = len(json.dumps(chunks_to_json(listed)))
    assert columns < 50 * 1000 and rows > 90 * 1000


def test_offsets_in_any_order_round_trip() -> None:
    """Offset steps are taken modulo 2**64: a list not sorted (or with the largest offsets)
    reads back the same."""
    chunks = (
        ChunkRef((1 << 64) - 1, 1, digest(1), "zstd", 0),
        ChunkRef(0, 1, digest(2), "zstd", (1 << 64) - 1),
        ChunkRef(5, 1, digest(3), "zstd", 1),
    )
    assert chunk_list_from_json(ChunkList(chunks).to_json()) == chunks


def test_the_reader_takes_the_rows_earlier_versions_persisted() -> None:
    """A transfer result persisted before the columns form holds chunks_to_json rows."""
    chunks = refs(5)
    assert chunk_list_from_json(chunks_to_json(chunks)) == chunks
    assert chunk_list_from_json(json.loads(json.dumps(chunks_to_json(chunks)))) == chunks
    listed = ChunkList(chunks)
    assert chunk_list_from_json(listed) is listed


def _damaged(edit: str) -> dict[str, object]:
    doc = ChunkList(refs(3)).to_json()
    if edit == "count":
        doc["count"] = 4
    elif edit == "base64":
        doc["digests"] = "not base64!"
    elif edit == "codec index":
        doc["codecs"] = ["zstd"]
    elif edit == "form":
        doc["form"] = "rows"
    elif edit == "codecs":
        doc["codecs"] = "zstd"
    elif edit == "numbers":
        doc["numbers"] = base64.b64encode(b"not zlib").decode()
    elif edit == "numbers short":
        doc["numbers"] = base64.b64encode(zlib.compress(bytes(50))).decode()
    return doc


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("count", "digests holds 96 bytes, expected 128"),
        ("numbers", "numbers are not a zlib stream"),
        ("numbers short", "numbers hold 50 bytes, expected 75"),
        ("base64", "not base64"),
        ("codec index", "codec index beyond"),
        ("form", "expected a list of rows or a columns object"),
        ("codecs", "bad codec names"),
    ],
)
def test_a_malformed_persisted_form_is_a_value_error(edit: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chunk_list_from_json(_damaged(edit))


def test_malformed_rows_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected a list of rows"):
        chunk_list_from_json("rows")
    with pytest.raises(ValueError, match="expected \\[offset"):
        chunk_list_from_json([[0, 1, digest(1)]])
    with pytest.raises(ValueError, match="invalid digest"):
        chunk_list_from_json([[0, 1, "xyz", "zstd", 1]])


def test_by_offset_is_a_mapping_in_offset_order_without_a_dict() -> None:
    chunks = refs(50)
    by_offset = ChunkList(chunks).by_offset()
    assert isinstance(by_offset, ChunksByOffset) and len(by_offset) == 50
    assert by_offset == {c.offset: c for c in chunks}
    assert by_offset[7 * CS] == chunks[7] and by_offset.get(7 * CS + 1) is None
    assert 0 in by_offset and -1 not in by_offset and 50 * CS not in by_offset
    assert list(by_offset) == [c.offset for c in chunks]
    assert list(by_offset.items()) == [(c.offset, c) for c in chunks]
    assert list(by_offset.values()) == list(chunks)
    with pytest.raises(KeyError):
        by_offset[3]


def test_objects_gives_what_a_store_holds_per_chunk() -> None:
    chunks = refs(4)
    assert list(ChunkList(chunks).objects()) == [
        (bytes.fromhex(c.digest), c.codec, c.stored_length, c.offset) for c in chunks
    ]
