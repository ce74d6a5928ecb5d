"""The remote stores (Swift, S3) on bad days: a `FaultProxy` between them and the real Swift.

Every test runs against the session's real Swift (and its s3api) through a
TCP proxy of its own that damages, stalls or drops traffic on command; if
the server cannot start, the tests fail (never skip).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pieceworks.drivers.s3_store import S3Store
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import ObjectStore
from tests.drivers.fault_proxy import FaultProxy
from tests.fixtures.swift_server import SwiftServer
from tests.support.remote_stores import unique


@dataclass
class Faulty:
    """A store whose every request goes through `proxy`, and a direct one on the same objects."""

    store: ObjectStore
    direct: ObjectStore
    proxy: FaultProxy


@pytest.fixture(params=["swift", "s3"])
def faulty(request: pytest.FixtureRequest, swift_server: SwiftServer) -> Iterator[Faulty]:
    with FaultProxy(swift_server.proxy_port) as proxy:
        name = unique()
        quick = {"retries": "2", "backoff": "0.05", "timeout": "5"}
        if request.param == "swift":
            options = swift_server.swift_options(name, **quick, segment_size="5MiB")
            direct: ObjectStore = SwiftStore(**options)
            auth_url = options["auth_url"].replace(
                f":{swift_server.proxy_port}/", f":{proxy.port}/"
            )
            store: ObjectStore = SwiftStore(**{**options, "auth_url": auth_url})
        else:
            options = swift_server.s3_options(name, **quick, multipart_threshold="5MiB")
            direct = S3Store(**options)
            endpoint = f"http://127.0.0.1:{proxy.port}"
            store = S3Store(**{**options, "endpoint_url": endpoint})
        yield Faulty(store, direct, proxy)


BODY = b"a chunk of a backup, " * 500


def test_a_body_damaged_on_the_way_up_is_refused_and_sent_again(faulty: Faulty) -> None:
    """One flipped byte of a PUT body: the service refuses it (MD5), the retry stores it whole.

    Swift stored the damaged bytes and `put` returned as if all was well
    (no ``ETag`` was sent); S3's refusal (``XAmzContentSHA256Mismatch``)
    was a `BackendError`, not retried.
    """
    faulty.proxy.fault("flip-request-body", times=1)
    faulty.store.put("chunks/ab/one", BODY)
    assert faulty.proxy.affected == 1
    assert faulty.direct.get("chunks/ab/one") == BODY


def test_a_body_damaged_on_the_way_down_is_fetched_again(faulty: Faulty) -> None:
    """One flipped byte of a GET body: the MD5 check notices, the retry returns the true bytes.

    `get` returned the damaged bytes.
    """
    faulty.direct.put("manifests/one", BODY)
    faulty.proxy.fault("flip-response-body", times=1)
    assert faulty.store.get("manifests/one") == BODY
    assert faulty.proxy.affected == 1


def test_a_large_object_damaged_on_the_way_down_is_fetched_again(faulty: Faulty) -> None:
    """The same for an object written in parts (a Swift SLO, an S3 multipart upload)."""
    big = bytes(range(256)) * (6 * 4096 + 7)  # 6 MiB and a bit: more than one part
    faulty.direct.put("chunks/cd/big", big)
    faulty.proxy.fault("flip-response-body", times=1)
    assert faulty.store.get("chunks/cd/big") == big
    assert faulty.proxy.affected == 1
