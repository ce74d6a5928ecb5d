"""Object stores on a real OpenStack Swift, through its Swift and its S3 API.

One behavioural suite runs against every store (`PosixStore` as the
reference, `SwiftStore`, `S3Store`); then what is particular to Swift (auth,
large objects, retries against a stopped proxy); then a backup and restore
end to end into each remote store. The server is the session's
`swift_server` (tests/fixtures/swift_server.py): if it cannot start, these
tests fail, they are never skipped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from swiftclient.client import Connection  # type: ignore[import-untyped]
from zope.interface.verify import verifyObject

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    restore,
    verify,
)
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.store_opener import open_store
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import (
    BackendError,
    ConfigError,
    InvalidName,
    IObjectStore,
    IStoredSizes,
    ObjectStore,
    StoredSizes,
    StoreSpec,
    stored_sizes,
    verify_driver,
)
from tests.common_algorithms.conftest import CHUNK, mixed_data, put_volume, sha, volume_sha
from tests.fixtures.swift_server import SwiftServer
from tests.support import remote_stores
from tests.support.object_stores import KEYS, check_missing_objects
from tests.support.remote_stores import SECRET, MiB, s3_store, swift_store, unique


@pytest.fixture(params=["posix", "swift", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """Each store in turn; the remote ones on the session's real Swift."""
    if request.param == "posix":
        yield PosixStore(tmp_path / "store", durable=False)
        return
    server: SwiftServer = request.getfixturevalue("swift_server")
    remote = swift_store(server) if request.param == "swift" else s3_store(server)
    yield remote
    if isinstance(remote, SwiftStore):
        remote.close()


# -- the shared object-store suite ---------------------------------------------------------


def test_capability_verifies(store: ObjectStore) -> None:
    """zope.interface accepts the instance, and verify_driver reports object-store."""
    assert verifyObject(IObjectStore, store)
    assert {IStoredSizes, IObjectStore} <= set(verify_driver(store, "x"))


def test_round_trip_head_and_idempotent_delete(store: ObjectStore) -> None:
    """Objects round trip (bytes and memoryview); head has size and mtime; delete twice is fine."""
    before = time.time()
    store.put("chunks/ab/abcd", b"payload")
    store.put("manifest", memoryview(b"m" * 10))
    store.put("empty", b"")
    assert store.get("chunks/ab/abcd") == b"payload"
    assert store.get("manifest") == b"m" * 10
    assert store.get("empty") == b""
    info = store.head("chunks/ab/abcd")
    assert (info.key, info.size) == ("chunks/ab/abcd", 7)
    assert before - 2 <= info.modified <= time.time() + 2
    assert store.head("empty").size == 0
    assert store.exists("manifest")
    store.delete("manifest")
    store.delete("manifest")
    assert not store.exists("manifest")
    assert store.get("chunks/ab/abcd") == b"payload"


def test_put_replaces(store: ObjectStore) -> None:
    """A second put of the same key replaces the object whole."""
    store.put("k", b"long old content")
    store.put("k", b"new")
    assert store.get("k") == b"new"
    assert store.head("k").size == 3


def test_missing_objects_raise_object_not_found(store: ObjectStore) -> None:
    """get and head of an absent key raise ObjectNotFound; exists is False; delete is fine."""
    check_missing_objects(store, ("absent", "dir", "no/such/key"))


@pytest.mark.parametrize("bad", ["", "/abs", "../up", "a//b", "a/./b", "a/"])
def test_bad_keys_are_invalid_names(store: ObjectStore, bad: str) -> None:
    """Keys that are not safe names are refused before anything is sent."""
    for call in (store.get, store.head, store.delete, store.exists):
        with pytest.raises(InvalidName):
            call(bad)
    with pytest.raises(InvalidName):
        store.put(bad, b"x")
    with pytest.raises(InvalidName):
        store.put_if_absent(bad, b"x")


PREFIXES = ["", "a", "a/", "a/b", "a/b.", "ab", "chunks/ab/", "chunks/a", "c", "zzz", "no/such/"]


def test_list_is_sorted_and_filtered_by_prefix(store: ObjectStore) -> None:
    """list(prefix) yields exactly the keys that start with prefix, in string order."""
    for key in reversed(KEYS):
        store.put(key, key.encode())
    for prefix in PREFIXES:
        assert list(store.list(prefix)) == sorted(k for k in KEYS if k.startswith(prefix)), prefix


def test_put_if_absent_never_overwrites(store: ObjectStore) -> None:
    """The first put_if_absent writes; the next ones leave the object alone."""
    assert store.put_if_absent("chunks/00/obj", b"first")
    assert not store.put_if_absent("chunks/00/obj", b"second")
    assert store.get("chunks/00/obj") == b"first"


def test_put_if_absent_loses_a_race_without_overwriting(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer stores the key between the existence check and the write: the
    store itself (link(2), If-None-Match: *) refuses to replace it."""
    store.put("chunks/00/obj", b"other writer")
    monkeypatch.setattr(store, "exists", lambda key: False)  # the check ran just before
    assert not store.put_if_absent("chunks/00/obj", b"late")
    assert store.get("chunks/00/obj") == b"other writer"


def test_large_object_round_trips_byte_for_byte(store: ObjectStore) -> None:
    """12 MiB, over the 5 MiB segment / multipart threshold, comes back exactly; then goes."""
    data = os.urandom(12 * MiB)
    store.put("big/object", memoryview(data))
    assert store.head("big/object").size == len(data)
    assert store.get("big/object") == data
    assert list(store.list("big/")) == ["big/object"]
    store.delete("big/object")
    assert not store.exists("big/object")
    assert list(store.list("")) == []


def test_sizes_answers_a_batch_by_listing_and_by_head(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stored-sizes: exact sizes of present keys, absent ones left out, big objects whole.

    20 keys share ``chunks/ab/`` (answered by one listing on Swift and S3);
    the others are HEADed; a large (segmented / multipart) object reports
    its whole size either way.
    """
    assert isinstance(store, StoredSizes) and verifyObject(IStoredSizes, store)
    many = [f"chunks/ab/{i:02d}" + "ab" * 31 for i in range(20)]
    for i, key in enumerate(many[:15]):
        store.put(key, b"x" * (i + 1))
    store.put("chunks/ab/big", os.urandom(6 * MiB))
    store.put("chunks/cd/one", b"12345")
    store.put("manifests/m.json", b"{}")
    wanted = [*many, "chunks/ab/big", "chunks/cd/one", "chunks/cd/absent", "manifests/m.json"]
    want = {k: i + 1 for i, k in enumerate(many[:15])}
    want |= {"chunks/ab/big": 6 * MiB, "chunks/cd/one": 5, "manifests/m.json": 2}
    assert store.sizes(wanted + wanted[:3]) == want
    assert stored_sizes(store, ["chunks/cd/one", "chunks/cd/absent"]) == {"chunks/cd/one": 5}
    with pytest.raises(InvalidName):
        store.sizes(["../escape"])


def test_concurrent_puts_from_four_threads(store: ObjectStore) -> None:
    """Four threads put and read back objects at once; every object is whole and listed."""
    blobs = {
        f"t{t}/obj-{i:02d}": os.urandom(256 * 1024 + t * 1000 + i)
        for t in range(4)
        for i in range(8)
    }
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for key, data in blobs.items():
                if key.startswith(f"t{t}/"):
                    store.put(key, data)
                    assert store.head(key).size == len(data)
                    assert store.get(key) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert list(store.list("")) == sorted(blobs)
    assert all(store.get(k) == v for k, v in blobs.items())


def test_repr_never_shows_the_secret(store: ObjectStore) -> None:
    """The key / secret key is masked in repr."""
    text = repr(store)
    assert "testing" not in text
    if not isinstance(store, PosixStore):
        assert "***" in text


# -- Swift specifics -----------------------------------------------------------------------


def test_unknown_and_malformed_options_are_config_errors(swift_server: SwiftServer) -> None:
    """A misspelt option is named; malformed values are refused before any request."""
    options = swift_server.swift_options(unique())
    with pytest.raises(ConfigError, match="segmnet_size"):
        SwiftStore(**options, segmnet_size="1")
    for bad in (
        {"segment_size": "lots"},
        {"segment_size": "0"},
        {"retries": "-1"},
        {"segment_concurrency": "0"},
        {"backoff": "soon"},
        {"insecure": "maybe"},
        {"auth_version": "4"},
    ):
        with pytest.raises(ConfigError):
            SwiftStore(**{**options, **bad})
    with pytest.raises(ConfigError, match="container"):
        SwiftStore(**{**options, "container": "a/b"})


def test_options_from_a_config_file_are_strings(swift_server: SwiftServer) -> None:
    """Every option may arrive as a string; the container is created on first use."""
    container = unique()
    store = SwiftStore(
        **swift_server.swift_options(
            container,
            auth_version="1.0",
            segment_size="5M",
            segment_concurrency="2",
            retries="0",
            backoff="0",
            max_backoff="1",
            timeout="30",
            insecure="false",
        )
    )
    store.put("x", b"1")
    conn = _admin(swift_server)
    assert [o["name"] for o in conn.get_container(container)[1]] == ["x"]
    assert "key='***'" in repr(store)


def test_bad_credentials_are_a_config_error_without_the_key(
    swift_server: SwiftServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong key or user: ConfigError that says so, and the key is nowhere."""
    caplog.set_level(logging.DEBUG)
    for user, key in (("test:tester", SECRET), ("test:nobody", SECRET)):
        with pytest.raises(ConfigError, match="authentication failed") as err:
            SwiftStore(**{**swift_server.swift_options(unique()), "user": user, "key": key})
        assert SECRET not in str(err.value)
        assert SECRET not in "".join(traceback.format_exception(err.value))
    assert SECRET not in caplog.text


def test_an_unusable_auth_url_is_a_config_error_at_once() -> None:
    """A URL scheme swiftclient cannot speak: ConfigError at once, nothing retried."""
    started = time.monotonic()
    with pytest.raises(ConfigError, match="Unsupported scheme") as err:
        SwiftStore("ftp://127.0.0.1/auth/v1.0", "u", SECRET, "c", retries=5, backoff=1)
    assert time.monotonic() - started < 1
    assert SECRET not in str(err.value)


def test_refused_connections_are_retried_with_backoff_then_transient(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens: 3 retries, backoff >= 0.2+0.4+0.8 s, then TransientError."""
    error = remote_stores.check_refused_connections_give_up(
        caplog,
        "pieceworks.drivers.swift_store",
        lambda port, **retry: SwiftStore(
            f"http://127.0.0.1:{port}/auth/v1.0", "test:tester", SECRET, "c", **retry
        ),
    )
    assert "Connection refused" in str(error) or "ConnectionError" in str(error)


def test_a_restarted_proxy_is_ridden_out_by_retries(
    swift_server: SwiftServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy goes down for a second; a put meanwhile retries and succeeds."""
    remote_stores.check_restarted_proxy_is_ridden_out(
        caplog, "pieceworks.drivers.swift_store", swift_server, swift_store
    )


def test_an_expired_token_is_renewed(swift_server: SwiftServer) -> None:
    """A 401 on a request (token expired or revoked) gets a new token and succeeds."""
    store = swift_store(swift_server)
    store.put("k", b"v")
    store._token = "AUTH_ftkexpired"  # what the store holds once the server forgets a token
    assert store.get("k") == b"v"
    assert store._token != "AUTH_ftkexpired"


def test_large_objects_are_static_large_objects_and_delete_removes_segments(
    swift_server: SwiftServer,
) -> None:
    """12 MiB with 5 MiB segments: 3 segments and an SLO manifest; delete removes all."""
    store = swift_store(swift_server)
    container = store._container
    data = os.urandom(12 * MiB)
    store.put("big", data)
    conn = _admin(swift_server)
    headers = conn.head_object(container, "big")
    assert headers["x-static-large-object"].lower() == "true"
    segments = [o["bytes"] for o in conn.get_container(f"{container}_segments")[1]]
    assert segments == [5 * MiB, 5 * MiB, 2 * MiB]
    store.delete("big")
    store.delete("big")
    assert conn.get_container(f"{container}_segments")[1] == []
    assert conn.get_container(container)[1] == []


def test_a_failed_large_put_leaves_no_segments(swift_server: SwiftServer) -> None:
    """A manifest PUT that Swift refuses (412) removes the segments it had uploaded."""
    store = swift_store(swift_server)
    container = store._container
    store.put("big", b"a" * (6 * MiB))
    conn = _admin(swift_server)
    before = conn.get_container(f"{container}_segments")[1]
    with pytest.raises(BackendError):
        store._put("big", b"b" * (11 * MiB), {"If-None-Match": "*"})
    assert conn.get_container(f"{container}_segments")[1] == before
    assert store.get("big") == b"a" * (6 * MiB)
    assert not store.put_if_absent("big", b"c" * (11 * MiB))


# -- end to end: backup and restore into the real Swift, through both APIs ----------------


@pytest.mark.parametrize("driver", ["swift", "s3"])
def test_backup_and_restore_through_a_remote_store(
    driver: str, swift_server: SwiftServer, tmp_path: Path
) -> None:
    """A volume backed up into Swift (or its S3 API) restores byte for byte and verifies."""
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    files = FileDriver(volumes)
    backend = Backend.of("lab", files)
    name = unique()
    options = (
        swift_server.swift_options(name) if driver == "swift" else swift_server.s3_options(name)
    )
    spec = StoreSpec("remote", driver, options)
    objects = open_store(spec)
    assert type(objects).__name__ == ("SwiftStore" if driver == "swift" else "S3Store")
    store = Store("remote", objects, spec)
    data = mixed_data()
    put_volume(backend, "vol", data)
    out = backup(backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK, in_use=True))
    assert out.strategy == "snapshot-stream" and out.size == len(data)
    assert list(objects.list("chunks/"))
    checked = verify(store, out.backup_id)
    assert checked.ok and checked.problems == ()
    back = restore(backend, store, RestoreRequest(out.backup_id, "copy"))
    assert back.strategy == "stream-in"
    assert volume_sha(files, "copy") == sha(data)


# -- helpers -------------------------------------------------------------------------------


def _admin(server: SwiftServer) -> Connection:
    """A plain swiftclient connection for looking behind the store's back."""
    return Connection(authurl=server.auth_url, user=server.user, key=server.key, retries=1)
