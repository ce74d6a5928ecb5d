"""The remote stores (Swift, S3) on bad days: a `FaultProxy` between them and the real Swift.

Every test runs against the session's real Swift (and its s3api) through a
TCP proxy of its own that damages, stalls or drops traffic on command; if
the server cannot start, the tests fail (never skip).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from swiftclient.client import Connection  # type: ignore[import-untyped]

from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup, verify
from pieceworks.drivers import s3_store, swift_store
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.s3_store import S3Store
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import BackendError, ObjectNotFound, ObjectStore, TransientError
from tests.common_algorithms.conftest import CHUNK, mixed_data, put_volume
from tests.drivers.fault_proxy import FaultProxy
from tests.fixtures.swift_server import SwiftServer
from tests.support.remote_stores import swift_store as swift_store_on
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


def test_a_container_deleted_while_in_use_is_an_error_not_a_missing_object(
    faulty: Faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Container / bucket deleted behind the store's back: get/head/exists raise `BackendError`.

    They raised `ObjectNotFound` (``exists`` said False), so a restore or
    check saw a store whose objects were all merely absent.
    """
    monkeypatch.setattr(swift_store, "_GONE_CHECK", 0.0, raising=False)
    monkeypatch.setattr(s3_store, "_GONE_CHECK", 0.0, raising=False)
    store = faulty.direct
    store.put("manifests/one", BODY)
    store.delete("manifests/one")
    if isinstance(store, SwiftStore):
        conn = Connection(store._auth_url, store._user, store._key)
        conn.delete_container(store._container)
    else:
        assert isinstance(store, S3Store)
        store._client.delete_bucket(Bucket=store._bucket)
    for call in (
        lambda: store.get("manifests/one"),
        lambda: store.head("manifests/one"),
        lambda: store.exists("manifests/one"),
    ):
        with pytest.raises(BackendError, match="does not exist") as caught:
            call()
        assert not isinstance(caught.value, ObjectNotFound)


def test_a_missing_object_in_a_present_container_is_still_object_not_found(
    faulty: Faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container check does not turn an ordinary miss into an error."""
    monkeypatch.setattr(swift_store, "_GONE_CHECK", 0.0, raising=False)
    monkeypatch.setattr(s3_store, "_GONE_CHECK", 0.0, raising=False)
    with pytest.raises(ObjectNotFound):
        faulty.store.get("manifests/none")
    assert not faulty.store.exists("chunks/ab/none")


def test_a_conditional_create_whose_answer_was_lost_still_reports_it_was_written(
    faulty: Faulty,
) -> None:
    """The PUT with ``If-None-Match: *`` is done, its answer lost; the retry gets 412.

    `put_if_absent` said False ("someone else wrote it") for our own write.
    """
    faulty.proxy.fault("drop-response:PUT", times=1)
    assert faulty.store.put_if_absent("locks/lease-one", b"token 1") is True
    assert faulty.proxy.affected == 1
    assert faulty.direct.get("locks/lease-one") == b"token 1"


def test_a_conditional_create_that_lost_the_race_after_a_retry_still_says_so(
    faulty: Faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer's different bytes, found by a retried PUT, are never taken for ours.

    The other writer gets in between the existence check and the PUT; the
    first 412 is lost on the way, the retry's 412 stands.
    """
    faulty.direct.put("locks/lease-two", b"token 2")
    monkeypatch.setattr(faulty.store, "exists", lambda key: False)  # checked before it came
    faulty.proxy.fault("drop-response:PUT", times=1)
    assert faulty.store.put_if_absent("locks/lease-two", b"token 3") is False
    assert faulty.proxy.affected == 1
    assert faulty.direct.get("locks/lease-two") == b"token 2"


def test_a_large_put_that_fails_removes_a_segment_whose_answer_was_lost(
    swift_server: SwiftServer,
) -> None:
    """Every try of a segment PUT is answered by a dropped connection: the put fails, and
    the segment Swift stored all the same is removed with the others.

    Only segments whose PUT had been answered were removed: the lost one stayed.
    """
    with FaultProxy(swift_server.proxy_port) as proxy:
        options = swift_server.swift_options(
            unique(), retries="1", backoff="0.05", segment_size="5MiB", segment_concurrency="1"
        )
        options["auth_url"] = options["auth_url"].replace(
            f":{swift_server.proxy_port}/", f":{proxy.port}/"
        )
        store = SwiftStore(**options)
        big = bytes(range(256)) * (11 * 4096)
        store.put("chunks/ab/warm", big)  # the segment container exists from now on
        segments = f"{options['container']}_segments"
        admin = Connection(swift_server.auth_url, swift_server.user, swift_server.key)
        before = admin.get_container(segments)[1]
        proxy.fault("drop-response:PUT", times=2)  # both tries of the first segment
        with pytest.raises(BackendError):
            store.put("chunks/ab/big", big)
        assert proxy.affected == 2
        assert admin.get_container(segments)[1] == before


def test_an_answer_without_a_write_time_is_a_clear_error(faulty: Faulty) -> None:
    """A HEAD answered without Last-Modified (and X-Timestamp): leases are aged on that clock.

    It was a bare ``KeyError: 'last-modified'`` (Swift) / ``'LastModified'`` (S3).
    """
    faulty.direct.put("locks/clock", b"{}")
    faulty.proxy.fault("strip:last-modified,x-timestamp")
    with pytest.raises(BackendError, match="clock cannot be read"):
        faulty.store.head("locks/clock")
    faulty.proxy.fault("pass")
    assert faulty.store.head("locks/clock").modified > 0


def test_a_service_that_stops_answering_times_out_and_gives_up(faulty: Faulty) -> None:
    """Connections are accepted and never answered: each try ends at `timeout` (5 s here),
    then the store gives up with `TransientError`, instead of hanging."""
    faulty.store.put("chunks/ab/stall", BODY)
    faulty.proxy.fault("stall")
    faulty.proxy.cut()
    started = time.monotonic()
    with pytest.raises(TransientError, match="gave up after 3 tries"):
        faulty.store.get("chunks/ab/stall")
    assert 3 * 5 <= time.monotonic() - started < 3 * 5 + 10
    faulty.proxy.fault("pass")
    assert faulty.store.get("chunks/ab/stall") == BODY


def test_a_listing_damaged_on_the_way_down_is_fetched_again(swift_server: SwiftServer) -> None:
    """One flipped byte of a Swift container listing (JSON): the listing is asked for again.

    It escaped as a bare ``UnicodeDecodeError`` from swiftclient's JSON parsing, which the
    CLI reported as "unexpected UnicodeDecodeError" (seen on ``pieceworks verify``).
    """
    with FaultProxy(swift_server.proxy_port) as proxy:
        options = swift_server.swift_options(unique(), retries="2", backoff="0.05")
        options["auth_url"] = options["auth_url"].replace(
            f":{swift_server.proxy_port}/", f":{proxy.port}/"
        )
        store = SwiftStore(**options)
        keys = [f"manifests/bk-{i}.json" for i in range(5)]
        for key in keys:
            store.put(key, b"{}")
        proxy.fault("flip-response-body", times=1)
        assert list(store.list("manifests/")) == keys
        assert proxy.affected == 1


def test_verify_through_a_damaging_network_quarantines_nothing(
    faulty: Faulty, tmp_path: Path
) -> None:
    """A chunk's GET damaged on the way during ``verify``: the store fetches it again.

    Before, the damaged bytes reached verify, which judged the (intact) stored
    chunk corrupt and moved it aside to ``quarantine/``: a network fault
    became a damaged backup.
    """
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    backend = Backend.of("lab", FileDriver(volumes))
    data = mixed_data()
    put_volume(backend, "vol", data)
    direct = Store("direct", faulty.direct, None)
    out = backup(backend, direct, BackupRequest(volume_id="vol", chunk_size=CHUNK, in_use=True))
    faulty.proxy.fault("flip-response-body:/chunks/", times=1)
    checked = verify(Store("faulty", faulty.store, None), out.backup_id)
    assert faulty.proxy.affected == 1
    assert checked.ok and checked.problems == ()
    assert list(faulty.direct.list("quarantine/")) == []


def test_a_dynamic_large_object_written_by_another_tool_is_read(
    swift_server: SwiftServer,
) -> None:
    """A DLO (``X-Object-Manifest``, as ``swift upload --use-dlo`` writes) has an ETag that is
    no MD5 of its body: `get` returns it, unchecked, instead of retrying a 'mismatch'."""
    store = swift_store_on(swift_server)
    admin = Connection(swift_server.auth_url, swift_server.user, swift_server.key)
    container = store._container
    admin.put_object(container, "dlo-parts/1", b"first half, ")
    admin.put_object(container, "dlo-parts/2", b"second half")
    admin.put_object(
        container, "manifests/dlo", b"", headers={"X-Object-Manifest": f"{container}/dlo-parts/"}
    )
    assert store.get("manifests/dlo") == b"first half, second half"
