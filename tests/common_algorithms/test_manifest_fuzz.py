"""Fuzzing manifest parsing (hypothesis): every input is a Manifest or a clear, typed error.

Three generators, each bounded (a few hundred examples): arbitrary bytes;
arbitrary JSON documents; and a valid manifest whose body has one field
replaced by an arbitrary JSON value and whose checksum is then made to
match again, so that the input gets past the checksum to the validation.
Anything other than `CorruptionError` or `UnknownFormatVersion` escaping
(a ValueError, RecursionError, OverflowError, TypeError...) fails the test.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pieceworks.common_algorithms.format.manifest import Manifest, UnknownFormatVersion
from pieceworks.protocols import ChunkRef, CorruptionError

CS = 64 * 1024
FORMAT = "pieceworks.manifest"
FUZZ = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

GOOD = Manifest(
    backup_id="bk-1",
    volume_id="vol-1",
    backend="lab",
    size=3 * CS,
    chunk_size=CS,
    codec="zstd",
    chunks=(
        ChunkRef(0, CS, "a" * 64, "zstd", 100),
        ChunkRef(2 * CS, CS, "b" * 64, "none", CS + 4),
    ),
    created=1_700_000_000.25,
    strategy="direct-stream",
    parent="bk-0",
    change_token="t",
    incremental=True,
    stats={"bytes_read": 1},
)
BODY: dict[str, Any] = json.loads(GOOD.to_json())["manifest"]

#: Values that broke parsers before: huge and special numbers, empty and blank strings.
EDGES: list[object] = [
    10**400, -(10**400), 2**63, -1, 0, 1.5, float("nan"), float("inf"), -float("inf"), "",
    " ", "\x00", "../x", "a" * 300, [], {}, None, True, False, [[[[[[]]]]]],
]  # fmt: skip
edges = st.sampled_from(EDGES)
json_values = edges | st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**330)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


def _parse(data: bytes) -> Manifest | None:
    try:
        return Manifest.from_json(data, "fuzzed manifest")
    except (CorruptionError, UnknownFormatVersion) as exc:
        assert str(exc), "an error must say what is wrong"
        return None


def _document(body: dict[str, Any]) -> bytes:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return json.dumps(
        {
            "format": "pieceworks.manifest",
            "version": 1,
            "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
            "manifest": body,
        }
    ).encode()


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    """Random bytes never parse into anything but an error."""
    assert _parse(data) is None


@FUZZ
@given(json_values)
def test_arbitrary_json_documents(value: object) -> None:
    """Any JSON document (NaN and huge numbers included) is a Manifest or a typed error."""
    _parse(json.dumps(value).encode())


@FUZZ
@given(st.sampled_from(sorted(BODY)), json_values)
def test_a_valid_checksum_over_a_wrong_field(field: str, value: object) -> None:
    """Past the checksum, each field is validated: a Manifest that round-trips, or an error."""
    body = dict(BODY)
    body[field] = value
    try:
        data = _document(body)
    except ValueError:  # NaN cannot be canonicalised: write it the way a damaged file would
        data = json.dumps(
            {"format": "pieceworks.manifest", "version": 1, "manifest": body}
        ).encode()
    parsed = _parse(data)
    if parsed is not None:
        assert Manifest.from_json(parsed.to_json()) == parsed


@FUZZ
@given(
    st.integers(min_value=0, max_value=len(BODY["chunks"]) - 1),
    st.integers(min_value=0, max_value=4),
    json_values,
)
def test_a_valid_checksum_over_a_wrong_chunk_row(row: int, column: int, value: object) -> None:
    """Each cell of a chunk row is checked (offsets, lengths, digest, codec, stored length)."""
    body = json.loads(json.dumps(BODY))
    body["chunks"][row][column] = value
    try:
        data = _document(body)
    except ValueError:
        return
    parsed = _parse(data)
    if parsed is not None:
        assert Manifest.from_json(parsed.to_json()) == parsed


def test_every_field_with_every_edge_value() -> None:
    """Exhaustively: each body field and each chunk cell set to each edge value."""
    for field in sorted(BODY):
        for value in EDGES:
            body = dict(BODY)
            body[field] = value
            try:
                data = _document(body)
            except ValueError:
                data = json.dumps({"format": FORMAT, "version": 1, "manifest": body}).encode()
            _parse(data)
    for row in range(len(BODY["chunks"])):
        for column in range(5):
            for value in EDGES:
                body = json.loads(json.dumps(BODY))
                body["chunks"][row][column] = value
                try:
                    data = _document(body)
                except ValueError:
                    continue
                _parse(data)
