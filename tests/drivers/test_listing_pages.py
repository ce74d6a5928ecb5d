"""Listings of more than one page on the real Swift / s3api: every key, once, in order.

A gc lists manifests to learn which chunks are referenced: a listing that
stops after its first page would have it delete referenced chunks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pieceworks.drivers.s3_store import S3Store
from pieceworks.protocols import BackendError
from tests.fixtures.swift_server import SwiftServer
from tests.support.remote_stores import s3_store
from tests.support.remote_stores import swift_store as swift_store_on

#: One more than an S3 page (1000 keys), and a key that sorts after all of them.
KEYS = [f"manifests/b{i:05d}" for i in range(1003)]


@pytest.fixture(scope="module")
def listed_store(swift_server: SwiftServer) -> S3Store:
    """An S3 store holding `KEYS`, plus ``manifests/b`` (a prefix that is a key too)."""
    store = s3_store(swift_server)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, b"{}"), [*KEYS, "manifests/b"]))
    return store


def test_a_listing_of_several_pages_sees_every_key_in_order(listed_store: S3Store) -> None:
    assert list(listed_store.list("manifests/b")) == ["manifests/b", *KEYS]
    assert len(listed_store.sizes(KEYS)) == len(KEYS)


def test_a_truncated_page_without_a_continuation_token_is_followed_by_start_after(
    listed_store: S3Store,
) -> None:
    """A service that says ``IsTruncated`` but gives no ``NextContinuationToken``.

    The listing stopped after the first page, silently: 1000 of 1004 keys.
    """

    def drop_token(parsed: dict[str, Any], **_: object) -> None:
        parsed.pop("NextContinuationToken", None)

    events = listed_store._client.meta.events
    events.register("after-call.s3.ListObjectsV2", drop_token)
    try:
        assert list(listed_store.list("manifests/b")) == ["manifests/b", *KEYS]
    finally:
        events.unregister("after-call.s3.ListObjectsV2", drop_token)


def test_a_service_that_repeats_a_page_is_an_error_not_a_short_listing(
    listed_store: S3Store,
) -> None:
    """No token and ``StartAfter`` ignored: the same page again is refused, not looped on."""

    def v1_only(params: dict[str, Any], **_: object) -> None:
        params.pop("StartAfter", None)
        params.pop("ContinuationToken", None)

    def drop_token(parsed: dict[str, Any], **_: object) -> None:
        parsed.pop("NextContinuationToken", None)

    events = listed_store._client.meta.events
    events.register("provide-client-params.s3.ListObjectsV2", v1_only)
    events.register("after-call.s3.ListObjectsV2", drop_token)
    try:
        with pytest.raises(BackendError, match="out of order"):
            list(listed_store.list("manifests/b"))
    finally:
        events.unregister("provide-client-params.s3.ListObjectsV2", v1_only)
        events.unregister("after-call.s3.ListObjectsV2", drop_token)


def test_swift_listings_follow_pages_to_the_end(swift_server: SwiftServer) -> None:
    """Pages of 100 names (the real one is the cluster's, 10,000): every key once, in order,
    and sizes. (tests/drivers/test_listing_limit.py has a Swift whose limit is 100.)"""
    store = swift_store_on(swift_server)
    store._page = 100  # what `_page_size` would have read from /info
    keys = KEYS[:250]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, b"{}"), [*keys, "manifests/b"]))
    assert list(store.list("manifests/b")) == ["manifests/b", *keys]
    assert store.sizes(keys) == dict.fromkeys(keys, 2)
