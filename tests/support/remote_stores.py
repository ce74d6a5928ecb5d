"""The remote object stores (Swift, S3) on the session's real Swift, for their tests.

Makers of a store on a fresh container or bucket with small segments and
quick retries, the proxy stopped for a while, and the retry checks that
both stores must pass the same way (`check_refused_connections_give_up`,
`check_restarted_proxy_is_ridden_out`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from pieceworks.drivers.s3_store import S3Store
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import ObjectStore, TransientError
from tests.fixtures.swift_server import SwiftServer, free_ports

MiB = 1 << 20
SECRET = "s3cr3t-must-never-show"


def unique(prefix: str = "pw") -> str:
    """A fresh container / bucket name (valid for both APIs)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def swift_store(server: SwiftServer, **extra: str) -> SwiftStore:
    """A SwiftStore on a new container, small segments, quick retries."""
    options = {"segment_size": "5MiB", "retries": "2", "backoff": "0.05", **extra}
    return SwiftStore(**server.swift_options(unique(), **options))


def s3_store(server: SwiftServer, **extra: str) -> S3Store:
    """An S3Store on a new bucket, 5 MiB parts, quick retries."""
    options = {
        "multipart_threshold": "5MiB",
        "part_size": "5MiB",
        "retries": "2",
        "backoff": "0.05",
        **extra,
    }
    return S3Store(**server.s3_options(unique(), **options))


def with_proxy_down(server: SwiftServer, seconds: float, call: Callable[[], object]) -> None:
    """Stop the proxy, run `call` while a thread starts it again after `seconds`."""
    server.stop(("proxy",))
    restarter = threading.Thread(target=server.restart, args=("proxy", seconds))
    restarter.start()
    try:
        call()
    finally:
        restarter.join()
        if "proxy" not in server.procs:
            server.start(("proxy",))


def check_refused_connections_give_up(
    caplog: pytest.LogCaptureFixture, logger: str, open_store: Callable[..., object]
) -> TransientError:
    """Nothing listens: 3 retries, backoff >= 0.2+0.4+0.8 s, then TransientError.

    ``open_store(port, retries=3, backoff=0.2, max_backoff=5)`` opens the
    store, with the key `SECRET`, on a port where nothing listens; `logger`
    is the store's logger. Returns the error, for the store's own checks.
    """
    caplog.set_level(logging.WARNING, logger=logger)
    (port,) = free_ports(1)
    started = time.monotonic()
    with pytest.raises(TransientError) as err:
        open_store(port, retries=3, backoff=0.2, max_backoff=5)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 10
    assert "gave up after 4 tries" in str(err.value)
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 3
    assert SECRET not in str(err.value) and SECRET not in caplog.text
    return err.value


def check_restarted_proxy_is_ridden_out(
    caplog: pytest.LogCaptureFixture,
    logger: str,
    server: SwiftServer,
    make_store: Callable[..., ObjectStore],
) -> None:
    """The proxy goes down for a second; a put meanwhile retries and succeeds.

    `make_store` is `swift_store` or `s3_store`; `logger` the store's logger.
    """
    caplog.set_level(logging.WARNING, logger=logger)
    store = make_store(server, retries="12", backoff="0.1", max_backoff="0.5")
    store.put("before", b"1")
    with_proxy_down(server, 1.0, lambda: store.put("during", b"2"))
    assert store.get("during") == b"2"
    assert any("retrying in" in r.getMessage() for r in caplog.records)
    assert "testing" not in caplog.text
