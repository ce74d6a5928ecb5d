"""Value types validate themselves, so nothing unsafe reaches a driver."""

from __future__ import annotations

import pytest

from pieceworks.protocols import (
    Extent,
    InvalidName,
    SnapshotRef,
    StoreSpec,
    VolumeRef,
    validate_id,
    validate_key,
)


@pytest.mark.parametrize("bad", ["", "..", ".hidden", "a/b", "a\\b", "x" * 129, "é", "a b", "-a"])
def test_unsafe_ids_are_refused_with_the_kind_named(bad: str) -> None:
    """Ids that could escape a directory or are malformed raise InvalidName."""
    with pytest.raises(InvalidName, match="invalid volume id"):
        VolumeRef(bad)


def test_safe_ids_pass() -> None:
    """Ordinary ids (letters, digits, dot, dash, underscore) are accepted."""
    assert validate_id("backup id", "vol-01_a.b") == "vol-01_a.b"
    assert SnapshotRef("v1", "s1").volume == VolumeRef("v1")


def test_references_read_as_words_in_messages() -> None:
    """``f"no {ref}"`` reads ``no snapshot 's1' of volume 'v1'``; it printed the
    dataclass repr, ``SnapshotRef(volume_id='v1', snapshot_id='s1')``, to users."""
    assert str(VolumeRef("v1")) == "volume 'v1'"
    assert f"no {SnapshotRef('v1', 's1')}" == "no snapshot 's1' of volume 'v1'"
    assert repr(VolumeRef("v1")) == "VolumeRef(volume_id='v1')"


@pytest.mark.parametrize("bad", ["", "/abs", "a//b", "a/../b", "a/./b", "a/", "../x", "a\x00b"])
def test_unsafe_object_keys_are_refused(bad: str) -> None:
    """Object keys with empty, dot or absolute parts raise InvalidName."""
    with pytest.raises(InvalidName, match="invalid object key"):
        validate_key(bad)


def test_extent_rejects_negative_ranges() -> None:
    """An extent with a negative offset or length is a programming error."""
    with pytest.raises(ValueError, match="negative"):
        Extent(-1, 10)
    assert Extent(10, 5).end == 15


def test_store_spec_repr_never_shows_option_values() -> None:
    """Secrets in store options do not appear in logs that print the spec."""
    spec = StoreSpec("lab", "swift", {"key": "s3cr3t", "user": "admin"})
    assert "s3cr3t" not in repr(spec) and "admin" not in repr(spec)
    assert "key, user" in repr(spec)
    with pytest.raises(TypeError):
        spec.options["key"] = "other"  # type: ignore[index]
