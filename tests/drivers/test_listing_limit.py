"""Listings on a real Swift whose ``container_listing_limit`` is below 10,000.

Swift refuses (412 Precondition Failed, "Maximum limit is N") a container
listing page larger than the limit in swift.conf's ``[swift-constraints]``.
`SwiftStore` asked for 10,000 names a page, so on such a cluster every
listing failed, and with it gc, ``list`` and ``check``. It now pages by the
limit the cluster advertises at ``GET /info``, and, where ``/info`` is
disabled, by the limit a 412 names.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pieceworks.common_algorithms.gc.collection import collect_garbage
from pieceworks.protocols import ObjectStore
from tests.fixtures.swift_server import SwiftServer, running_swift
from tests.support.remote_stores import s3_store, swift_store

LIMIT = 100
#: Two and a half pages, and a key that is also the prefix of the others.
KEYS = [f"manifests/b{i:05d}" for i in range(250)]
CHUNK = "chunks/ab/ab" + "0" * 62


@pytest.fixture(scope="module")
def low_limit() -> Iterator[SwiftServer]:
    """A Swift whose container listings hold at most `LIMIT` names; s3api pages by 50."""
    with running_swift(
        constraints={"container_listing_limit": str(LIMIT)},
        s3api_options={"max_bucket_listing": "50"},
    ) as server:
        yield server


@pytest.fixture(scope="module")
def hidden_limit() -> Iterator[SwiftServer]:
    """The same limit, on a Swift that does not expose ``/info`` (403)."""
    with running_swift(
        constraints={"container_listing_limit": str(LIMIT)},
        proxy_options={"expose_info": "false"},
    ) as server:
        yield server


def _fill(store: ObjectStore, keys: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, b"{}"), keys))


def _info_requests(server: SwiftServer) -> int:
    """How many ``GET /info`` the proxy has logged."""
    return sum(" /info " in line for line in server.log_path("proxy").read_text().splitlines())


def test_swift_lists_in_pages_of_the_advertised_limit(low_limit: SwiftServer) -> None:
    """Every key once, in order; /info is read once per store, not once per listing."""
    store = swift_store(low_limit)
    _fill(store, [*KEYS, "manifests/b"])
    before = _info_requests(low_limit)
    assert list(store.list("manifests/b")) == ["manifests/b", *KEYS]
    assert list(store.list("manifests/")) == ["manifests/b", *KEYS]
    assert store.sizes(KEYS) == dict.fromkeys(KEYS, 2)
    assert _info_requests(low_limit) - before == 1


def test_swift_without_info_goes_down_to_the_limit_the_refusal_names(
    hidden_limit: SwiftServer, caplog: pytest.LogCaptureFixture
) -> None:
    """/info answers 403: the first page of 10,000 is refused (412), the rest asks 100."""
    store = swift_store(hidden_limit)
    _fill(store, [*KEYS, "manifests/b"])
    assert list(store.list("manifests/b")) == ["manifests/b", *KEYS]
    assert list(store.list("manifests/b")) == ["manifests/b", *KEYS]
    refusals = [r for r in caplog.records if "refused a listing page of 10000" in r.getMessage()]
    assert len(refusals) == 1
    assert "listing 100 at a time" in refusals[0].getMessage()


def test_gc_on_a_low_limit_swift_collects_an_unreferenced_chunk(low_limit: SwiftServer) -> None:
    """The listing gc makes of ``chunks/`` failed with 412 before: nothing was collected."""
    store = swift_store(low_limit)
    _fill(store, [*(f"chunks/cd/cd{i:062d}" for i in range(150)), CHUNK])
    report = collect_garbage(store, grace=0)
    assert report.chunks_deleted == 151
    assert list(store.list("chunks/")) == []


def test_s3_follows_continuation_when_the_service_caps_max_keys(low_limit: SwiftServer) -> None:
    """s3api answers 50 keys to MaxKeys=1000 (``IsTruncated``): each page is followed."""
    store = s3_store(low_limit)
    _fill(store, [*KEYS, "manifests/b"])
    assert list(store.list("manifests/b")) == ["manifests/b", *KEYS]
    assert len(store.sizes(KEYS)) == len(KEYS)


def test_s3_on_a_swift_whose_limit_is_below_a_page_halves_its_pages(
    hidden_limit: SwiftServer, caplog: pytest.LogCaptureFixture
) -> None:
    """s3api asks Swift for MaxKeys + 1 names: Swift refuses (412) and s3api answers 500
    InternalError, so every S3 listing failed; pages are halved until Swift lists them."""
    store = s3_store(hidden_limit)
    _fill(store, [*KEYS, "manifests/b"])
    assert list(store.list("manifests/b")) == ["manifests/b", *KEYS]
    halved = [r.getMessage() for r in caplog.records if "keys a page" in r.getMessage()]
    assert [m.split("listing ")[-1] for m in halved] == [
        "500 at a time",
        "250 at a time",
        "125 at a time",
        "62 at a time",
    ]
    caplog.clear()
    assert list(store.list("manifests/")) == ["manifests/b", *KEYS]
    assert len(store.sizes(KEYS)) == len(KEYS)
    assert not [r for r in caplog.records if "keys a page" in r.getMessage()]
