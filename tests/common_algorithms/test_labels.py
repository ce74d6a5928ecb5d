"""Backup labels: recorded in the manifest, validated, and backward compatible.

A manifest without labels is byte for byte what earlier versions wrote (no
``labels`` key); one with labels round-trips, and a label that is not a
safe key or a printable value is refused by the request and the manifest.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from pieceworks.common_algorithms import BackupRequest
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.protocols import ConfigError
from tests.common_algorithms.test_manifest import make


def test_a_manifest_without_labels_has_no_labels_key() -> None:
    """Earlier readers see exactly the document they always saw."""
    body = json.loads(make().to_json())["manifest"]
    assert "labels" not in body


def test_labels_round_trip_and_are_covered_by_the_checksum() -> None:
    m = make(labels={"env": "prod", "kind": "nightly run"})
    back = Manifest.from_json(m.to_json())
    assert dict(back.labels) == {"env": "prod", "kind": "nightly run"}
    assert json.loads(m.to_json())["manifest"]["labels"] == {"env": "prod", "kind": "nightly run"}
    assert back == m
    tampered = m.to_json().replace(b"nightly run", b"nightly-run")
    with pytest.raises(Exception, match="checksum"):
        Manifest.from_json(tampered)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ({"": "x"}, "invalid label key"),
        ({"-x": "x"}, "invalid label key"),
        ({"k/y": "x"}, "invalid label key"),
        ({"k": "a\nb"}, "invalid value for label 'k'"),
        ({"k": "x" * 257}, "invalid value for label 'k'"),
        ({"k": 5}, "invalid value for label 'k'"),
    ],
)
def test_invalid_labels_are_refused(labels: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(labels=labels)
    with pytest.raises(ConfigError, match=match):
        BackupRequest("vol-1", labels=labels)  # type: ignore[arg-type]


def test_the_request_carries_labels_and_stays_comparable() -> None:
    r = BackupRequest("vol-1", labels={"env": "prod"})
    assert r.labels == {"env": "prod"}
    assert dataclasses.replace(r) == r and hash(r) == hash(dataclasses.replace(r))
