"""An object store in one OpenStack Swift container (python-swiftclient).

`SwiftStore` keeps every object under its key in one container, created if
missing (with ``create=False``, a missing container is `StoreMissing` and
nothing is created):

* `put` is one object PUT, atomic in Swift. An object larger than
  `segment_size` becomes a Static Large Object: its segments go to the
  container ``<container>_segments`` first, then the manifest is PUT (the
  manifest PUT is the atomic step; segments of a failed put are removed);
* `get`/`head` raise `ObjectNotFound` on 404 (but `BackendError` if the
  container itself is gone, checked on a 404 at most every 10 s); `delete`
  removes an object and,
  for a large one, its segments (``multipart-manifest=delete``); a missing
  object is no error;
* `list` pages through the container listing (sorted by Swift), in pages of
  the cluster's ``container_listing_limit`` (read once from ``GET /info``;
  10,000, Swift's default, if ``/info`` is disabled, and smaller if Swift
  then refuses the page with 412 "Maximum limit is N");
* `sizes` (the ``stored-sizes`` extension) lists a key prefix that many of
  the keys share (the listing carries each object's size) and HEADs the
  rest, `head_concurrency` at a time;
* `put_if_absent` sends ``If-None-Match: *`` so that Swift itself refuses to
  replace an object written meanwhile;
* integrity on the wire: every PUT (object or segment) carries the body's
  MD5 as ``ETag``, which Swift checks (422 if the bytes arrived damaged); a
  GET's body is checked against the object's ``ETag`` (a large object's
  against the MD5 its manifest records in ``X-Object-Meta-Pieceworks-Md5``).
  A mismatch either way is retried.

Failures worth retrying (connection errors, timeouts, answers that do not
parse, such as a damaged listing, HTTP 5xx, 408, 422, 429)
are retried with exponential backoff (tenacity) and end in `TransientError`.
A socket timeout bounds each read only: one try of a request also has a
total deadline (`request_deadline`), after which its connection is shut
down (`_object_client.Deadline`) and the try fails like a timeout, naming
the store, the request and the deadline. A PUT cut off is not stored (Swift
stores an object once its whole body has arrived), a large object's
segments are removed.
Bad credentials are a `ConfigError`. The key is never shown: not in `repr`,
messages or logs.

Thread safety: a `swiftclient.client.Connection` is not thread-safe, so each
thread gets its own (the segments of a large object go up from a few
threads at once); the auth token is obtained once and shared by all.
Overwriting a large object leaves the old object's segments behind (deleting
it removes the current ones): pieceworks writes large objects once.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TypeVar

from oslo_utils import strutils
from swiftclient.client import get_auth  # type: ignore[import-untyped]
from swiftclient.exceptions import ClientException  # type: ignore[import-untyped]

from pieceworks.drivers import _object_client
from pieceworks.drivers._swift_wire import (
    MD5_META,
    Denied,
    PageTooLarge,
    PreconditionFailed,
    WatchedConnection,
    delete_large,
    delete_plain,
    md5,
    modified,
    stored_md5,
)
from pieceworks.protocols import (
    BackendError,
    ConfigError,
    ObjectInfo,
    ObjectNotFound,
    PieceworksError,
    StoredSizes,
    StoreMissing,
    TransientError,
    validate_key,
)
from pieceworks.protocols.os_errors import os_cause

__all__ = ["DEFAULT_SEGMENT_SIZE", "SwiftStore"]

DEFAULT_SEGMENT_SIZE: Final = 64 << 20
#: 422: the body did not match its ``ETag`` (damaged on the way); sending it again may work.
_TRANSIENT_STATUS: Final = frozenset({408, 422, 425, 429, 498, 499})
#: Names per listing page when the cluster does not advertise its
#: ``container_listing_limit`` (Swift's default limit).
_PAGE: Final = 10_000
_RECHECK: Final = 60.0  # seconds between checks for a segment container that was absent
#: Seconds between checks, on a 404 for an object, that the container itself still exists.
_GONE_CHECK: Final = 10.0
_OPTIONS: Final = _object_client.StoreOptions("swift store", size_example="64MiB")
_AUTH_VERSIONS: Final = {"1": "1.0", "1.0": "1.0", "2": "2.0", "2.0": "2.0", "3": "3"}
_OS_OPTIONS: Final = (
    "project_name",
    "project_domain_name",
    "user_domain_name",
    "region_name",
    "endpoint_type",
)

T = TypeVar("T")
log = logging.getLogger(__name__)


class SwiftStore(StoredSizes):
    """An object store in one Swift container.

    Options (keyword arguments; strings from a configuration file are
    accepted for every one):

    `auth_url`, `user`, `key`
        Where and as whom to authenticate (tempauth ``account:user`` for
        v1 auth).
    `container`
        The container that holds the objects; created if missing, unless
        `create` is false.
    `create`
        Whether a missing container is created when the store is opened
        (default true: what a backup wants). With false, a container that
        does not exist (HEAD answers 404) raises `StoreMissing` naming it,
        and nothing is created; the commands that only read a store open it
        this way. (The segment container is made on the first large write
        either way.)
    `auth_version`
        ``1`` (default), ``2`` or ``3`` (2 and 3 need python-keystoneclient
        and take `project_name`, `project_domain_name`, `user_domain_name`,
        `region_name`, `endpoint_type`).
    `segment_size`
        Objects larger than this (bytes; ``64MiB`` style suffixes accepted)
        are stored as Static Large Objects. Default 64 MiB.
    `segment_container`
        Where segments go; default ``<container>_segments``.
    `segment_concurrency`
        How many segments of one large object are uploaded at once (default 4).
    `retries`, `backoff`, `max_backoff`
        Retries after the first try (default 5), first wait and cap (seconds,
        default 0.5 and 10) of the exponential backoff between tries.
    `timeout`
        Socket timeout of each request in seconds (default 60): how long
        one connect, read or write may wait.
    `request_deadline`
        Seconds one try of one request may take in all, plus one second per
        MiB of the body sent: default 300. A
        service that trickles its answer is cut off there.
    `insecure`
        Skip TLS certificate verification (default false).
    """

    def __init__(
        self,
        auth_url: str,
        user: str,
        key: str,
        container: str,
        auth_version: str | int = "1",
        segment_size: int | str = DEFAULT_SEGMENT_SIZE,
        segment_container: str | None = None,
        segment_concurrency: int | str = 4,
        retries: int | str = 5,
        backoff: float | str = 0.5,
        max_backoff: float | str = 10.0,
        timeout: float | str = 60.0,
        request_deadline: float | str = _object_client.DEFAULT_REQUEST_DEADLINE,
        insecure: bool | str = False,
        *,
        create: bool | str = True,
        **unknown: object,
    ) -> None:
        os_options = {k: str(unknown.pop(k)) for k in _OS_OPTIONS if k in unknown}
        _OPTIONS.refuse_unknown(unknown)
        _OPTIONS.require_strings(
            {"auth_url": auth_url, "user": user, "container": container}, secret=("key", key)
        )
        if "/" in container:
            raise ConfigError(f"swift store: container {container!r} must not contain '/'")
        version = _AUTH_VERSIONS.get(str(auth_version))
        if version is None:
            raise ConfigError(
                f"swift store: auth_version must be 1, 2 or 3, not {str(auth_version)!r}"
            )
        self._auth_url = auth_url
        self._user = user
        self._key = key
        self._container = container
        self._segment_container = segment_container or f"{container}_segments"
        if "/" in self._segment_container:
            raise ConfigError("swift store: segment_container must not contain '/'")
        self._auth_version = version
        self._label = f"swift store {container!r} at {_object_client.mask_url(auth_url)}"
        self._os_options = os_options
        self._segment_size = _OPTIONS.size("segment_size", segment_size)
        self._concurrency = _OPTIONS.whole("segment_concurrency", segment_concurrency, 1)
        self._retry = _OPTIONS.retry_policy(retries, backoff, max_backoff, log)
        self._timeout = _OPTIONS.number("timeout", timeout, 0.001)
        self._deadline = _OPTIONS.number("request_deadline", request_deadline, 0.001)
        self._insecure = _OPTIONS.flag("insecure", insecure)
        make = _OPTIONS.flag("create", create)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()  # to close them
        self._url: str | None = None
        self._token: str | None = None
        self._segments: bool | None = None  # whether the segment container exists
        self._segments_checked = 0.0
        self._container_seen = 0.0  # when the container was last known to exist (monotonic)
        self._page: int | None = None  # names per listing page (`_page_size`)
        try:
            if make:
                self._ensure_container(self._container)
            else:
                self._require_container()
        except Denied as exc:
            raise ConfigError(str(exc)) from None

    def __repr__(self) -> str:
        auth_url = _object_client.mask_url(self._auth_url)
        return (
            f"SwiftStore(auth_url={auth_url!r}, user={self._user!r},"
            f" key={_object_client.MASK!r}, container={self._container!r})"
        )

    # -- the object-store contract -------------------------------------------------

    def put(self, key: str, data: bytes | memoryview) -> None:
        self._put(validate_key(key), _object_client.body_bytes(data), {})

    def get(self, key: str) -> bytes:
        validate_key(key)

        def get(conn: Any) -> bytes:
            headers, body = conn.get_object(self._container, key)
            expected = int(headers.get("content-length", len(body)))
            if len(body) != expected:  # a large object whose segment went missing
                raise TransientError(
                    f"{self._label}: get {key!r}: short read, {len(body)} of {expected} bytes"
                )
            want = stored_md5(headers)
            if want is not None and md5(body) != want:  # damaged on the way
                raise TransientError(
                    f"{self._label}: get {key!r}: the body's MD5 is not the stored {want}"
                )
            return bytes(body)

        return self._call(f"get {key!r}", get, missing=key)

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        headers = self._call(
            f"head {key!r}", lambda c: c.head_object(self._container, key), missing=key
        )
        written = modified(headers)
        if written is None:
            raise BackendError(
                f"{self._label}: head {key!r}: the answer has no usable X-Timestamp or"
                " Last-Modified, so the store's clock cannot be read"
            )
        return ObjectInfo(key, int(headers["content-length"]), written)

    def delete(self, key: str) -> None:
        """Remove `key`; for a large object, its segments too. A missing key is fine.

        One DELETE while the store has no segment container (no large object
        was ever written); else a HEAD first, to find out whether `key` is a
        large object.
        """
        validate_key(key)
        if self._segments_exist():
            try:
                headers = self._call(
                    f"head {key!r}", lambda c: c.head_object(self._container, key), missing=key
                )
            except ObjectNotFound:
                return
            if strutils.bool_from_string(headers.get("x-static-large-object")):
                self._call(f"delete {key!r}", lambda c: delete_large(c, self._container, key))
                return
        self._call(f"delete {key!r}", lambda c: delete_plain(c, self._container, key))

    def list(self, prefix: str) -> Iterator[str]:
        for name, _ in self._listing(prefix):
            yield name

    def sizes(self, keys: Iterable[str]) -> dict[str, int]:
        """A container listing per shared key prefix, concurrent HEADs for the rest."""

        def head(key: str) -> int | None:
            try:
                return self.head(key).size
            except ObjectNotFound:
                return None

        return _object_client.batched_sizes(
            keys, head=head, listing=self._listing, concurrency=self._concurrency
        )

    def _listing(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object under `prefix`, a listing page at a time.

        Each page starts after the last name of the one before (``marker``);
        names must come in strictly increasing order, else `BackendError`
        (never a listing that stops early or loops). A page holds
        `_page_size` names; a page Swift refuses as too large (412) is asked
        again, smaller, and so are the pages after it.
        """
        marker = ""
        while True:
            limit = self._page_size()

            def page_after(
                conn: Any, marker: str = marker, limit: int = limit
            ) -> list[dict[str, Any]]:
                try:
                    _, page = conn.get_container(
                        self._container, prefix=prefix, marker=marker, limit=limit
                    )
                except ClientException as exc:
                    if exc.http_status == 412:
                        raise PageTooLarge(limit, exc.http_response_content) from None
                    raise
                return list(page)

            try:
                page = self._call(f"list {prefix!r}", page_after)
            except PageTooLarge as exc:
                self._page = exc.smaller(self._label)
                continue
            if not page:
                return
            for entry in page:
                name = str(entry["name"])
                if marker and name.encode() <= marker.encode():  # a page that repeats or goes back
                    raise BackendError(
                        f"{self._label}: list {prefix!r}: Swift listed {name!r} after"
                        f" {marker!r}, out of order; the listing cannot be trusted"
                    )
                marker = name
                yield name, int(entry["bytes"])

    def _page_size(self) -> int:
        """Names per listing page: the cluster's ``container_listing_limit``, asked once.

        ``GET /info`` (unauthenticated) advertises it under ``swift``. If
        `/info` is disabled (``expose_info = false``: 403), missing, or says
        nothing usable, Swift's default `_PAGE` is used, and a 412 to a page
        makes `_listing` go smaller. Cached for the store's life.
        """
        if self._page is None:
            self._page = self._advertised_limit() or _PAGE
        return self._page

    def _advertised_limit(self) -> int | None:
        """The ``container_listing_limit`` ``GET /info`` advertises; None if it does not."""
        try:
            info = self._call("read the cluster's /info", lambda c: c.get_capabilities())
        except BackendError as exc:
            log.info("%s: no listing limit from /info, using %d: %s", self._label, _PAGE, exc)
            return None
        swift = info.get("swift") if isinstance(info, dict) else None
        limit = swift.get("container_listing_limit") if isinstance(swift, dict) else None
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
            return limit
        log.info("%s: /info advertises no usable container_listing_limit", self._label)
        return None

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """Write `key` unless it exists; Swift refuses (412) to replace one written meanwhile.

        A 412 to a retried PUT may answer our own earlier try, whose answer
        was lost (the object was written, the connection dropped): then the
        stored object is read back, and if it holds exactly `data` the write
        counts as ours (True).
        """
        if self.exists(key):
            return False
        body = _object_client.body_bytes(data)
        tries = _object_client.Tries()
        try:
            self._put(key, body, {"If-None-Match": "*"}, tries)
        except PreconditionFailed:
            return tries.count > 1 and self._holds(key, body)
        return True

    def _holds(self, key: str, body: bytes) -> bool:
        """Whether `key` is stored with exactly `body`."""
        try:
            return self.get(key) == body
        except ObjectNotFound:
            return False

    def close(self) -> None:
        """Close every connection this store opened (it reconnects if used again)."""
        with self._lock:
            connections, self._connections = list(self._connections), weakref.WeakSet()
            self._local = threading.local()
        for conn in connections:
            conn.close()

    # -- writing -----------------------------------------------------------------------

    def _put(
        self,
        key: str,
        body: bytes,
        headers: dict[str, str],
        tries: _object_client.Tries | None = None,
    ) -> None:
        """PUT `body` whole or as a large object; Swift checks it against its MD5 (``ETag``).

        `tries` counts the tries of the PUT that makes the object visible.
        """
        if len(body) > self._segment_size:
            self._put_large(key, body, {**headers, MD5_META: md5(body)}, tries)
            return
        digest = md5(body)
        self._call(
            f"put {key!r}",
            lambda c: c.put_object(
                self._container,
                key,
                body,
                content_length=len(body),
                etag=digest,
                content_type="application/octet-stream",
                headers=headers,
            ),
            tries=tries,
            size=len(body),
        )

    def _put_large(
        self,
        key: str,
        body: bytes,
        headers: dict[str, str],
        tries: _object_client.Tries | None = None,
    ) -> None:
        """Upload the segments (`segment_concurrency` at a time), then the manifest."""
        if not self._segments:
            self._ensure_container(self._segment_container)
            self._segments = True
        prefix = f"{key}/{time.time():.6f}-{secrets.token_hex(4)}/"
        view = memoryview(body)
        offsets = list(range(0, len(body), self._segment_size))
        uploaded: list[str] = []  # segments tried, by the workers (list.append is atomic)

        def put_segment(index: int) -> dict[str, object]:
            part = bytes(view[offsets[index] : offsets[index] + self._segment_size])
            name = f"{prefix}{index:08d}"
            digest = md5(part)
            # Before the PUT: a try whose answer is lost may have stored it all the same.
            uploaded.append(name)
            self._call(
                f"put segment {index} of {key!r}",
                lambda c: c.put_object(
                    self._segment_container, name, part, content_length=len(part), etag=digest
                ),
                size=len(part),
            )
            return {
                "path": f"/{self._segment_container}/{name}",
                "etag": digest,
                "size_bytes": len(part),
            }

        try:
            manifest = _object_client.run_all(
                put_segment, len(offsets), self._concurrency, "swift-segment"
            )
            document = json.dumps(manifest).encode()
            self._call(
                f"put manifest of {key!r}",
                lambda c: c.put_object(
                    self._container,
                    key,
                    document,
                    content_length=len(document),
                    content_type="application/octet-stream",
                    headers=headers,
                    query_string="multipart-manifest=put",
                ),
                tries=tries,
            )
        except BaseException:
            for name in uploaded:  # best effort: a failed put leaves nothing behind

                def remove(conn: Any, name: str = name) -> None:
                    delete_plain(conn, self._segment_container, name)

                try:
                    self._call(f"remove segment {name!r}", remove)
                except BackendError as exc:
                    log.warning("%s: cannot remove segment %r: %s", self._label, name, exc)
            raise

    def _segments_exist(self) -> bool:
        """Whether the segment container exists (checked at most once a minute while not)."""
        if self._segments is None or (
            not self._segments and time.monotonic() - self._segments_checked > _RECHECK
        ):
            found = self._container_exists(self._segment_container)
            self._segments, self._segments_checked = found, time.monotonic()
        return bool(self._segments)

    # -- containers and auth -----------------------------------------------------------

    def _ensure_container(self, container: str) -> None:
        def ensure(conn: Any) -> None:
            try:
                conn.head_container(container)
            except ClientException as exc:
                if exc.http_status != 404:
                    raise
                conn.put_container(container)

        self._call(f"create container {container!r}", ensure)
        if container == self._container:
            self._container_seen = time.monotonic()

    def _container_exists(self, container: str) -> bool:
        """Whether `container` exists (one HEAD; a 404 is False, nothing is made)."""

        def exists(conn: Any) -> bool:
            try:
                conn.head_container(container)
            except ClientException as exc:
                if exc.http_status == 404:
                    return False
                raise
            return True

        return self._call(f"head container {container!r}", exists)

    def _require_container(self) -> None:
        """`StoreMissing` if the store's container does not exist (one HEAD; nothing made)."""
        if not self._container_exists(self._container):
            raise StoreMissing(
                f"{self._label} does not exist (no container {self._container!r}); nothing"
                " was created: check the container's name, or run a backup to create it",
                self._label,
            )
        self._container_seen = time.monotonic()

    def _container_still_there(self, conn: Any) -> None:
        """Raise `BackendError` if the container is gone (checked at most every `_GONE_CHECK` s).

        Swift answers 404 alike for a missing object and a missing container;
        without this check a container deleted under a running restore or
        check made every object look merely absent.
        """
        if time.monotonic() - self._container_seen < _GONE_CHECK:
            return
        try:
            conn.head_container(self._container)
        except ClientException as exc:
            if exc.http_status == 404:
                raise BackendError(
                    f"{self._label}: the container {self._container!r} does not exist"
                    " (deleted while in use?)"
                ) from None
            return  # no answer either way: the object's 404 stands
        except OSError:
            return
        self._container_seen = time.monotonic()

    def _credentials(self) -> tuple[str, str]:
        """The storage URL and token, authenticating (once, for all threads) if needed."""
        with self._lock:
            if self._url is None or self._token is None:
                try:
                    url, token = get_auth(
                        self._auth_url,
                        self._user,
                        self._key,
                        auth_version=self._auth_version,
                        os_options=dict(self._os_options),
                        insecure=self._insecure,
                        timeout=self._timeout,
                    )
                except ClientException as exc:
                    if exc.http_status in (401, 403):
                        raise ConfigError(
                            f"{self._label}: authentication failed for user {self._user!r}"
                            f" ({exc.http_status} {exc.http_reason}): check user and key"
                        ) from None
                    if exc.http_status is None:  # no answer to blame: a setup problem
                        raise ConfigError(
                            f"{self._label}: cannot authenticate: {self._scrub(str(exc))}"
                        ) from None
                    raise
                self._url, self._token = str(url), str(token)
            return self._url, self._token

    def _invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:  # another thread may have renewed it already
                self._token = None

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = WatchedConnection(
                retries=0, timeout=self._timeout, insecure=self._insecure, auth_version="1.0"
            )
            self._local.conn = conn
            with self._lock:
                self._connections.add(conn)
        return conn

    # -- calls, errors and retries -----------------------------------------------------

    def _call(
        self,
        what: str,
        fn: Callable[[Any], T],
        missing: str | None = None,
        tries: _object_client.Tries | None = None,
        size: int = 0,
    ) -> T:
        """Run `fn(connection)` with retries; map swiftclient errors to ours.

        `missing`: the key whose 404 means `ObjectNotFound` (else 404 is an error).
        `tries`: counts the tries made. `size`: the bytes the request moves
        (its deadline grows by a second per MiB).
        """
        seconds = _object_client.Deadline.for_body(self._deadline, size)

        def once() -> T:
            if tries is not None:
                tries.count += 1
            conn = self._connection()
            renewed = False
            token = None
            while True:
                try:
                    conn.url, conn.token = _, token = self._credentials()
                    return fn(conn)
                except ClientException as exc:
                    if exc.http_status == 401 and token and not renewed:  # expired: renew once
                        self._invalidate(token)
                        renewed = True
                        continue
                    if exc.http_status == 404 and missing is not None:
                        self._container_still_there(conn)
                        raise ObjectNotFound(f"no object {missing!r}") from None
                    if exc.http_status == 412:
                        raise PreconditionFailed(self._scrub(str(exc))) from None
                    raise self._error(what, exc) from None
                except OSError as exc:  # requests' errors are OSErrors: connection, timeout
                    conn.close()  # start the next try on a new connection
                    cause = os_cause(exc)  # the socket's error, in words: not "[Errno 111] ..."
                    why = cause.strerror if cause is not None else self._scrub(str(exc))
                    raise TransientError(
                        f"{self._label}: {what}: {type(exc).__name__}: {why}"
                    ) from None
                except PieceworksError:  # ours (ConfigError is a ValueError too)
                    raise
                except ValueError as exc:  # an answer that does not parse: damaged on the way
                    conn.close()
                    raise TransientError(
                        f"{self._label}: {what}: unreadable answer:"
                        f" {type(exc).__name__}: {self._scrub(str(exc))}"
                    ) from None

        return self._retry.call(
            lambda: _object_client.within_deadline(seconds, self._label, what, once)
        )

    def _error(self, what: str, exc: ClientException) -> BackendError:
        status = exc.http_status
        message = f"{self._label}: {what}: {self._scrub(str(exc))}"
        if status is not None and (status >= 500 or status in _TRANSIENT_STATUS):
            return TransientError(message)
        if status in (401, 403):
            return Denied(f"{message} (check user, key and the account's ACLs)")
        return BackendError(message)

    def _scrub(self, text: str) -> str:
        """`text` with the key and anything that looks like a secret masked."""
        return _object_client.scrub(text, (self._key, self._token))
