"""A store that trickles is cut off: one try of a request has a total deadline.

The socket timeout (`timeout`) bounds each read: a service that sends one
byte every half second never reaches it, and a GET of a 10 kB object took
hours. Every request now also has `request_deadline` (seconds, plus one per
MiB of body); past it the connection is shut down and the try fails with a
`TransientError` naming the store, the request and the deadline. A PUT cut
off mid-body leaves no object behind. Both remote stores, through a
`FaultProxy` in front of the real Swift.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pieceworks.drivers import _object_client
from pieceworks.drivers.s3_store import S3Store
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import ConfigError, ObjectNotFound, ObjectStore, TransientError
from tests.drivers.fault_proxy import FaultProxy
from tests.fixtures.swift_server import SwiftServer
from tests.support.remote_stores import unique

BODY = b"a chunk of a backup, " * 500  # 10.5 kB: 90 minutes at a byte every 0.5 s
DEADLINE = 3.0


@dataclass
class Slow:
    """A store through `proxy` (deadline 3 s, no retries) and a direct one on the same objects."""

    store: ObjectStore
    direct: ObjectStore
    proxy: FaultProxy
    label: str


@pytest.fixture(params=["swift", "s3"])
def slow(request: pytest.FixtureRequest, swift_server: SwiftServer) -> Iterator[Slow]:
    with FaultProxy(swift_server.proxy_port) as proxy:
        name = unique()
        options = {"retries": "0", "timeout": "20", "request_deadline": str(DEADLINE)}
        if request.param == "swift":
            direct_options = swift_server.swift_options(name, **options)
            direct: ObjectStore = SwiftStore(**direct_options)
            auth_url = direct_options["auth_url"].replace(
                f":{swift_server.proxy_port}/", f":{proxy.port}/"
            )
            store: ObjectStore = SwiftStore(**{**direct_options, "auth_url": auth_url})
            label = f"swift store {name!r}"
        else:
            direct_options = swift_server.s3_options(name, **options)
            direct = S3Store(**direct_options)
            store = S3Store(**{**direct_options, "endpoint_url": f"http://127.0.0.1:{proxy.port}"})
            label = f"s3 store {name!r}"
        yield Slow(store, direct, proxy, label)


def _within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run `call` in a thread; the error it raised (None if none); fail if still running."""
    raised: list[BaseException | None] = [None]

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            raised[0] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: not cut off"
    return raised[0]


def test_a_trickled_answer_is_cut_off_at_the_deadline(slow: Slow) -> None:
    slow.direct.put("chunks/ab/slow", BODY)
    slow.proxy.fault("trickle:0.5")
    slow.proxy.cut()  # pooled connections would bypass the new mode
    started = time.monotonic()
    error = _within(30, lambda: slow.store.get("chunks/ab/slow"))
    elapsed = time.monotonic() - started
    assert isinstance(error, TransientError), error
    message = str(error)
    assert slow.label in message and "get 'chunks/ab/slow'" in message, message
    assert "request deadline of 3 s" in message and "request_deadline" in message, message
    assert DEADLINE <= elapsed < DEADLINE + 10
    slow.proxy.fault("pass")
    assert slow.store.get("chunks/ab/slow") == BODY  # the store works again


def test_a_put_cut_off_mid_upload_leaves_no_object(slow: Slow) -> None:
    """The body goes up a byte every half second: cut off, and nothing is stored."""
    slow.proxy.fault("trickle-up:0.5")
    slow.proxy.cut()
    started = time.monotonic()
    error = _within(30, lambda: slow.store.put("chunks/cd/half", BODY))
    assert isinstance(error, TransientError), error
    assert "put 'chunks/cd/half'" in str(error) and "request deadline of" in str(error)
    assert time.monotonic() - started < DEADLINE + 10
    slow.proxy.fault("pass")
    time.sleep(1.0)  # let the service notice the closed connection
    with pytest.raises(ObjectNotFound):
        slow.direct.head("chunks/cd/half")
    assert list(slow.direct.list("chunks/")) == []
    slow.store.put("chunks/cd/half", BODY)
    assert slow.direct.get("chunks/cd/half") == BODY


def test_a_request_that_finishes_in_time_is_not_touched(slow: Slow) -> None:
    """Many quick requests on one deadline each: none is cut off, connections are reused."""
    for i in range(20):
        slow.store.put(f"chunks/ef/{i:02d}", BODY)
    assert all(slow.store.get(f"chunks/ef/{i:02d}") == BODY for i in range(20))
    time.sleep(DEADLINE + 0.5)  # the deadlines of those requests pass: nothing happens
    assert slow.store.get("chunks/ef/00") == BODY


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "nan"])
def test_a_bad_request_deadline_is_a_config_error(swift_server: SwiftServer, bad: str) -> None:
    with pytest.raises(ConfigError, match="request_deadline must be"):
        SwiftStore(**swift_server.swift_options(unique(), request_deadline=bad))
    with pytest.raises(ConfigError, match="request_deadline must be"):
        S3Store(**swift_server.s3_options(unique(), request_deadline=bad))


def test_deadlines_that_end_in_time_are_forgotten() -> None:
    """The watchdog keeps what runs, not every request of the last 300 s."""
    for _ in range(10_000):
        with _object_client.Deadline(300.0, "s", "w") as deadline:
            pass
    assert not deadline.fired
    assert len(_object_client._WATCHDOG._heap) < 3000
    with _object_client.Deadline(0.2, "s", "w") as deadline:
        time.sleep(0.6)
    assert deadline.fired
