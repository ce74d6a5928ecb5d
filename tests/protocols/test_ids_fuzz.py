"""Fuzzing every id validator (hypothesis): a safe value back, or `InvalidName` saying why.

The validators: `validate_id` (volume, backup, snapshot, backend and store
ids), `validate_key` (object keys), `chunk_key` (a chunk digest),
`manifest_key` (a backup id as a manifest's key) and the command line's
`id_type` (every id option, where an empty or blank id is a usage error).
Whatever they accept must be safe to use as a path component or key.
"""

from __future__ import annotations

import argparse
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pieceworks.cli.parser import id_type
from pieceworks.common_algorithms.format.manifest import manifest_key
from pieceworks.protocols import InvalidName, validate_id, validate_key
from pieceworks.protocols.chunks import chunk_key

FUZZ = settings(max_examples=200, deadline=None, database=None)
SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: Inputs of every kind, weighted towards what usually slips through.
anything = (
    st.text(max_size=300)
    | st.text(alphabet=" \t\n\r\x00/\\.-_aZ09", max_size=12)
    | st.sampled_from(["", " ", ".", "..", "/", "a/../b", "a" * 128, "a" * 129, "é", "a\n"])
    | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,140}", fullmatch=True)
    | st.integers()
    | st.none()
    | st.binary(max_size=10)
    | st.lists(st.text(max_size=3), max_size=3)
)


def _safe_id(value: str) -> None:
    assert isinstance(value, str) and 1 <= len(value) <= 128 and value.strip() == value
    assert SAFE_PART.fullmatch(value) and "/" not in value and value not in (".", "..")


@FUZZ
@given(anything)
def test_validate_id(value: object) -> None:
    """Returns the same safe id, or raises InvalidName naming the kind."""
    try:
        accepted = validate_id("volume id", value)  # type: ignore[arg-type]
    except InvalidName as exc:
        assert "invalid volume id" in str(exc)
        return
    assert accepted is value
    _safe_id(accepted)


@FUZZ
@given(anything | st.lists(st.from_regex(r"[A-Za-z0-9._-]{0,6}", fullmatch=True)).map("/".join))
def test_validate_key(value: object) -> None:
    """Accepted keys are '/'-joined safe parts: no empty, '.', '..' or leading '/'."""
    try:
        accepted = validate_key(value)  # type: ignore[arg-type]
    except InvalidName as exc:
        assert "invalid object key" in str(exc)
        return
    parts = accepted.split("/")
    assert all(SAFE_PART.fullmatch(p) and len(p) <= 255 for p in parts)


@FUZZ
@given(anything | st.from_regex(r"[0-9a-fA-F]{60,68}", fullmatch=True))
def test_chunk_key(value: object) -> None:
    """Only 64 lowercase hex digits make a chunk key, under chunks/<first two>/."""
    try:
        key = chunk_key(value)  # type: ignore[arg-type]
    except InvalidName as exc:
        assert "invalid chunk digest" in str(exc)
        return
    assert isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value)
    assert key == f"chunks/{value[:2]}/{value}" and validate_key(key) == key


@FUZZ
@given(anything)
def test_manifest_key(value: object) -> None:
    """A backup id becomes manifests/<id>.json, or InvalidName."""
    try:
        key = manifest_key(value)  # type: ignore[arg-type]
    except InvalidName:
        return
    assert isinstance(value, str)
    _safe_id(value)
    assert key == f"manifests/{value}.json" and validate_key(key) == key


@FUZZ
@given(anything.filter(lambda v: isinstance(v, str)))
def test_command_line_ids(value: str) -> None:
    """An id option's type: the id, or ArgumentTypeError (exit 2); empty and blank named so."""
    check = id_type("volume id")
    try:
        accepted = check(value)
    except argparse.ArgumentTypeError as exc:
        if not value.strip():
            assert "must not be empty or blank" in str(exc)
        else:
            assert "invalid volume id" in str(exc)
        return
    _safe_id(accepted)
