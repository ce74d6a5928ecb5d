"""The manifest format: round trip, self-checksum, validation, and its store operations."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from pieceworks.common_algorithms.format import manifest_json
from pieceworks.common_algorithms.format.manifest import (
    FORMAT_VERSION,
    BackupExists,
    Manifest,
    UnknownFormatVersion,
    known_chunks,
    latest_manifest,
    list_backup_ids,
    list_manifests,
    manifest_key,
    read_manifest,
    write_manifest,
)
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import BackupNotFound, ChunkRef, CorruptionError, InvalidName

CS = 4 << 20


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def make(backup_id: str = "b1", created: float = 1_700_000_000.5, **kw: object) -> Manifest:
    fields: dict[str, object] = {
        "backup_id": backup_id,
        "volume_id": "vol-1",
        "backend": "file",
        "size": 10 * CS + 123,
        "chunk_size": CS,
        "codec": "zstd",
        "chunks": (
            ChunkRef(0, CS, digest(1), "zstd", 1000),
            ChunkRef(3 * CS, CS, digest(2), "zlib", 2000),
            ChunkRef(10 * CS, 123, digest(3), "none", 127),
        ),
        "created": created,
        "strategy": "snapshot-stream",
        "parent": "b0",
        "change_token": "gen-42",
        "incremental": True,
        "stats": {"bytes_read": 12345, "note": "forced"},
    }
    fields.update(kw)
    return Manifest(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> PosixStore:
    return PosixStore(tmp_path / "store", durable=False)


def rewrite(doc: dict[str, object]) -> bytes:
    """A document re-serialised with a correct checksum over its (edited) body."""
    body = json.dumps(doc["manifest"], sort_keys=True, separators=(",", ":")).encode()
    doc["sha256"] = hashlib.sha256(body).hexdigest()
    return json.dumps(doc).encode()


def test_json_round_trip_is_exact_and_compact() -> None:
    """A manifest survives to_json/from_json unchanged; chunks are stored as small arrays."""
    m = make()
    data = m.to_json()
    assert Manifest.from_json(data) == m
    doc = json.loads(data)
    assert doc["version"] == FORMAT_VERSION and doc["format"] == "pieceworks.manifest"
    assert doc["manifest"]["chunks"][1] == [3 * CS, CS, digest(2), "zlib", 2000]
    assert b" " not in data
    assert m.data_bytes == 2 * CS + 123 and m.stored_bytes == 3127
    assert m.digests() == {digest(1), digest(2), digest(3)}
    assert m.chunk_map()[3 * CS] == m.chunks[1]
    empty = make(chunks=(), parent=None, change_token=None, incremental=False, stats={})
    assert Manifest.from_json(empty.to_json()) == empty


def _reference_json(m: Manifest) -> bytes:
    """The manifest's bytes as to_json made them before it encoded the rows in pieces: the
    canonical JSON of the whole document, the checksum over the body's canonical JSON."""

    def canonical(obj: object) -> bytes:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode("ascii")

    body = m._body()  # the rows as one list, as ever
    return canonical(
        {
            "format": "pieceworks.manifest",
            "version": FORMAT_VERSION,
            "sha256": hashlib.sha256(canonical(body)).hexdigest(),
            "manifest": body,
        }
    )


@pytest.mark.parametrize("count", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_to_json_is_the_canonical_document_byte_for_byte(count: int) -> None:
    """to_json encodes the chunk rows a few thousand at a time and hashes them as they come
    (memory: the peak no longer holds the rows three times); the bytes are the canonical
    JSON they always were, with labels, stats and enhancers of every kind of character."""
    chunks = tuple(ChunkRef(i * CS, CS, digest(i), "zstd", 1000 + i) for i in range(count))
    m = make(
        size=max(count, 1) * CS,
        chunks=chunks,
        labels={"team": 'st\u00f6rage "q" \\ /', "emoji": "\U0001f4be", "chunks": "[]"},
        stats={"bytes_read": 5, "note": "chunks\u0000"},
        enhancers_used={"allocated-extents": 7},
    )
    data = m.to_json()
    assert data == _reference_json(m)
    assert Manifest.from_json(data) == m


def test_rows_of_every_width_and_codec_are_the_canonical_bytes() -> None:
    """The rows are encoded from the columns into a buffer sized by counting first: ints
    of 1 to 20 digits, the three codecs mixed, a chunk at offset 0 of length 1."""
    rng = random.Random(12)
    chunks, offset = [], 0
    for i in range(3000):
        length = rng.choice([1, 9, 10, 4096, CS])
        chunks.append(
            ChunkRef(offset, length, digest(i), ("zstd", "zlib", "none")[i % 3], rng.choice(
                [0, 1, 99, 100, rng.randrange(1 << 64)]
            ))
        )  # fmt: skip
        offset += length + rng.choice([0, 0, 1, 10**12])
    m = make(size=offset + CS, chunks=tuple(chunks))
    data = m.to_json()
    assert data == _reference_json(m) and bytes(m.encoded()) == data
    assert Manifest.from_json(data) == m


def test_store_round_trip_and_key(store: PosixStore) -> None:
    """write_manifest stores under manifests/<id>.json; read_manifest gives it back."""
    m = make()
    write_manifest(store, m)
    assert manifest_key("b1") == "manifests/b1.json"
    assert list(store.list("")) == ["manifests/b1.json"]
    assert read_manifest(store, "b1") == m
    with pytest.raises(InvalidName, match="invalid backup id"):
        manifest_key("../evil")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.replace(b'"vol-1"', b'"vol-2"'), "checksum does not match"),
        (lambda raw: raw.replace(b"12345", b"12346"), "checksum does not match"),
        (lambda raw: raw[: len(raw) // 2], "not valid JSON"),
        (lambda raw: b"", "not valid JSON"),
        (lambda raw: b'{"hello": 1}', "not a pieceworks manifest"),
        (
            lambda raw: json.dumps({**json.loads(raw), "manifest": [1]}).encode(),
            "no manifest body",
        ),
    ],
)
def test_a_damaged_manifest_is_corruption(
    tmp_path: Path, store: PosixStore, edit: object, message: str
) -> None:
    """Any change to a stored manifest is reported as CorruptionError naming the backup."""
    write_manifest(store, make())
    path = (tmp_path / "store") / "manifests/b1.json"
    path.write_bytes(edit(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(CorruptionError, match=message) as err:
        read_manifest(store, "b1")
    assert "'b1'" in str(err.value)


def test_an_unknown_format_version_is_refused_clearly(tmp_path: Path, store: PosixStore) -> None:
    """A manifest from a newer pieceworks is refused with its version, not misread."""
    doc = json.loads(make().to_json())
    doc["version"] = 2
    ((tmp_path / "store") / "manifests").mkdir(parents=True)
    ((tmp_path / "store") / "manifests/b1.json").write_bytes(json.dumps(doc).encode())
    with pytest.raises(
        UnknownFormatVersion, match="format version 2; this pieceworks reads version 1"
    ):
        read_manifest(store, "b1")


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([[CS, CS, digest(1), "zstd", 1], [0, CS, digest(2), "zstd", 1]], "overlaps or precedes"),
        (
            [[0, CS, digest(1), "zstd", 1], [CS - 1, 10, digest(2), "zstd", 1]],
            "overlaps or precedes",
        ),
        ([[0, CS + 1, digest(1), "zstd", 1]], "has length"),
        ([[0, 0, digest(1), "zstd", 1]], "has length"),
        ([[10 * CS, 124, digest(1), "zstd", 1]], "ends beyond the volume size"),
        ([[0, CS, "xyz", "zstd", 1]], "invalid digest"),
        ([[0, CS, digest(1), "lz4", 1]], "unknown codec"),
        ([[0, CS, digest(1), "zstd", -1]], "negative stored length"),
        ([[0, CS, digest(1), "zstd"]], "malformed chunk entry"),
        ([[0.5, CS, digest(1), "zstd", 1]], "must be ints"),
    ],
)
def test_inconsistent_content_is_refused_on_load(chunks: list[list[object]], message: str) -> None:
    """Even with a valid checksum, chunks must be sorted, disjoint, in size, well formed."""
    doc = json.loads(make().to_json())
    doc["manifest"]["chunks"] = chunks
    with pytest.raises(CorruptionError, match=message):
        Manifest.from_json(rewrite(doc), "manifest of backup 'b1'")


def test_a_missing_field_and_a_wrong_id_are_corruption(tmp_path: Path, store: PosixStore) -> None:
    """A body without a field, or stored under another backup's name, is refused."""
    doc = json.loads(make().to_json())
    del doc["manifest"]["volume_id"]
    with pytest.raises(CorruptionError, match="is invalid: 'volume_id'"):
        Manifest.from_json(rewrite(doc))
    ((tmp_path / "store") / "manifests").mkdir(parents=True)
    ((tmp_path / "store") / "manifests/other.json").write_bytes(make().to_json())
    with pytest.raises(CorruptionError, match="records backup id 'b1', not 'other'"):
        read_manifest(store, "other")


def test_construction_validates_every_field() -> None:
    """Bad values raise ValueError (or InvalidName for ids) naming the problem."""
    with pytest.raises(InvalidName, match="invalid backup id"):
        make(backup_id="a/b")
    with pytest.raises(InvalidName, match="invalid parent backup id"):
        make(parent="")
    with pytest.raises(ValueError, match="codec 'lz4'"):
        make(codec="lz4")
    with pytest.raises(ValueError, match="size must be an int"):
        make(size=-1)
    with pytest.raises(ValueError, match="chunk_size must be an int > 0"):
        make(chunk_size=0)
    with pytest.raises(ValueError, match="created must be a number"):
        make(created=float("nan"))
    with pytest.raises(ValueError, match="stat 'x'"):
        make(stats={"x": 1.5})
    with pytest.raises(ValueError, match="ends beyond"):
        make(size=CS)
    m = make()
    with pytest.raises(TypeError):
        m.stats["new"] = 1  # type: ignore[index]
    assert hash(m) == hash(make())


def test_an_existing_backup_is_never_overwritten(store: PosixStore) -> None:
    """Writing a second manifest under the same id raises BackupExists; the first stays."""
    first = make()
    write_manifest(store, first)
    with pytest.raises(BackupExists, match="backup 'b1' already exists"):
        write_manifest(store, make(strategy="offload"))
    assert read_manifest(store, "b1") == first


def test_writing_the_same_backup_again_is_success(store: PosixStore) -> None:
    """A re-run write of an identical manifest (later `created`) succeeds; the stored one stays."""
    first = make()
    write_manifest(store, first)
    stored = store.get("manifests/b1.json")
    write_manifest(store, first)
    write_manifest(store, make(created=first.created + 60.0))
    assert store.get("manifests/b1.json") == stored


@pytest.mark.parametrize(
    "change",
    [
        {"strategy": "offload"},
        {"volume_id": "other-volume"},
        {"stats": {"bytes_read": 1}},
        {"incremental": False, "parent": None},
    ],
)
def test_other_content_under_an_existing_id_is_refused(
    store: PosixStore, change: dict[str, object]
) -> None:
    """Any field but `created` differing: BackupExists, and the stored manifest is untouched."""
    write_manifest(store, make())
    stored = store.get("manifests/b1.json")
    with pytest.raises(BackupExists, match=r"backup 'b1' already exists .* other content"):
        write_manifest(store, make("b1", 1_700_000_000.5, **change))
    assert store.get("manifests/b1.json") == stored


def test_a_damaged_manifest_under_the_id_is_never_replaced(store: PosixStore) -> None:
    """An unreadable object under the id is not "the same backup": BackupExists, bytes kept."""
    store.put("manifests/b1.json", b"{not json")
    with pytest.raises(BackupExists):
        write_manifest(store, make())
    assert store.get("manifests/b1.json") == b"{not json"


def test_a_missing_backup_is_named(store: PosixStore) -> None:
    """Reading an unknown id raises BackupNotFound with the id."""
    with pytest.raises(BackupNotFound, match="no backup 'nope'"):
        read_manifest(store, "nope")


def test_listing_is_sorted_by_creation_time(store: PosixStore) -> None:
    """list_manifests returns oldest first; latest_manifest picks the newest of a volume."""
    write_manifest(store, make("zz-old", created=100.0))
    write_manifest(store, make("aa-new", created=300.0))
    write_manifest(store, make("mm-mid", created=200.0))
    write_manifest(store, make("other-vol", created=400.0, volume_id="vol-2"))
    store.put("manifests/not-a-manifest.txt", b"ignored")
    assert list_backup_ids(store) == ["aa-new", "mm-mid", "other-vol", "zz-old"]
    assert [m.backup_id for m in list_manifests(store)] == [
        "zz-old",
        "mm-mid",
        "aa-new",
        "other-vol",
    ]
    latest = latest_manifest(store, "vol-1")
    assert latest is not None and latest.backup_id == "aa-new"
    assert latest_manifest(store, "vol-1", backend="other") is None
    assert latest_manifest(store, "vol-3") is None


def test_known_chunks_maps_digests_to_stored_objects() -> None:
    """known_chunks gives, per digest, a ChunkRef describing the stored object."""
    a = make("a")
    b = make("b", chunks=(ChunkRef(0, CS, digest(9), "zstd", 5),))
    known = known_chunks([a, b])
    assert set(known) == {digest(1), digest(2), digest(3), digest(9)}
    assert known[digest(2)].codec == "zlib" and known[digest(2)].stored_length == 2000
    assert dataclasses.replace(a, chunks=()).digests() == frozenset()


def _many(count: int = 3 * 4096 + 5) -> Manifest:
    chunks = tuple(
        ChunkRef(i * CS, CS, digest(i), ("zstd", "zlib", "none")[i % 3], 1000 + i)
        for i in range(count)
    )
    return make(size=count * CS, chunks=chunks, labels={"note": '"chunks":[[1]],[2]'})


@pytest.mark.parametrize("batch_bytes", [1, 1000, 400_000])
def test_reading_parses_the_rows_in_batches_as_a_whole_parse_would(
    batch_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """from_json of bytes parses the rows a batch at a time (memory); the manifest is the one
    the whole-document parse gives (a str is parsed whole)."""
    monkeypatch.setattr(manifest_json, "ROW_BYTES_AT_ONCE", batch_bytes)
    m = _many()
    data = m.to_json()
    batched = Manifest._from_json_in_batches(data)
    assert batched is not None and batched == m == Manifest.from_json(data.decode())
    empty = make(chunks=())
    assert Manifest._from_json_in_batches(empty.to_json()) == empty


def _reformatted(data: bytes) -> bytes:
    return json.dumps(json.loads(data), indent=1).encode()


def _rows_with_brackets(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["manifest"]["chunks"][1][3] = "z]],[x"  # an unknown codec, with the cuts' marks
    doc = json.loads(rewrite(doc))
    return json.dumps(doc, separators=(",", ":")).encode()  # compact: the batches try it


@pytest.mark.parametrize("edit", [_reformatted, _rows_with_brackets])
def test_what_the_batches_do_not_take_is_read_whole_with_the_same_outcome(
    edit: Callable[[bytes], bytes],
) -> None:
    """Another layout (spaces), or rows the cuts would split wrongly: the whole parse decides,
    accepting or refusing exactly as it does a str."""
    data = edit(_many(50).to_json())
    with contextlib.suppress(ValueError):
        assert Manifest._from_json_in_batches(data) is None
    try:
        expected: object = Manifest.from_json(data.decode())
    except CorruptionError as exc:
        expected = str(exc)
    try:
        got: object = Manifest.from_json(data)
    except CorruptionError as exc:
        got = str(exc)
    assert got == expected
