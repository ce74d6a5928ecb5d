"""What the remote object stores (`SwiftStore`, `S3Store`) share.

* `StoreOptions` parses a store's options, which arrive as Python values or
  as the strings of a configuration file (``8MiB``, ``"4"``, ``"0.5"``,
  ``"true"``), and words every refusal as a `ConfigError` naming the store;
* `RetryPolicy` runs one request with retries: `TransientError` is retried
  with exponential backoff and jitter (tenacity), each retry is logged as a
  warning on the store's own logger, and the last error says how many tries
  were made (`Tries` lets a caller count them too);
* `run_all` runs the uploads of one large object's parts a few at a time,
  and `body_bytes` makes the bytes a request body needs;
* `batched_sizes` answers the ``stored-sizes`` extension for a batch of
  keys: a listing per key prefix that many keys share, concurrent HEADs
  for the rest;
* `mask_url` and `scrub` keep passwords, keys and tokens out of `repr`,
  messages and logs (`MASK` stands in for them);
* `Deadline` bounds one request's total time: a socket timeout bounds each
  read, so a service that trickles a byte every few seconds never hits it.
  `watch_pools` makes a urllib3 pool manager (under requests, for
  swiftclient, and under botocore) record which connection each request
  uses; when a request's deadline passes, a watchdog thread shuts that
  connection's socket down, which ends the blocked read at once, and the
  store reports `Deadline.error`.

Private to the drivers package: it imports only `pieceworks.protocols`, the
standard library and the stores' client libraries.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import tenacity
from oslo_utils import strutils

from pieceworks.protocols import ConfigError, TransientError, validate_key

__all__ = [
    "DEFAULT_REQUEST_DEADLINE",
    "MASK",
    "Deadline",
    "RetryPolicy",
    "StoreOptions",
    "Tries",
    "batched_sizes",
    "body_bytes",
    "mask_url",
    "run_all",
    "scrub",
    "watch_pools",
    "within_deadline",
]

#: What stands in for a secret wherever one would be shown.
MASK: Final = "***"
_MIN_SECRET: Final = 4  # secrets shorter than this are masked by patterns only
_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+)\s*(?:([kmgt])(?:i?b)?|b)?\s*", re.IGNORECASE)

T = TypeVar("T")
N = TypeVar("N", int, float)
log = logging.getLogger(__name__)

#: Seconds one request (one try) may take in all, plus one second per MiB of its body
#: (`Deadline.for_body`): a 64 MiB chunk gets 364 s, at least 0.18 MiB/s.
DEFAULT_REQUEST_DEADLINE: Final = 300.0


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """The option parser of one kind of store.

    `owner` starts every message (``"s3 store"``); `size_example` is the
    size a malformed size's message suggests (``"8MiB"``).
    """

    owner: str
    size_example: str

    def refuse_unknown(self, unknown: Mapping[str, object]) -> None:
        """A `ConfigError` naming every option in `unknown`, if there is any."""
        if unknown:
            raise ConfigError(f"{self.owner}: unknown option(s): {', '.join(sorted(unknown))}")

    def require_strings(self, non_empty: Mapping[str, object], secret: tuple[str, object]) -> None:
        """Each of `non_empty` must be a non-empty string; the `secret` (name, value) a string."""
        for name, value in non_empty.items():
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{self.owner}: {name} must be a non-empty string")
        if not isinstance(secret[1], str):
            raise ConfigError(f"{self.owner}: {secret[0]} must be a string")

    def size(self, name: str, value: int | str) -> int:
        """A byte count from an int or a string such as ``8MiB``, ``5M`` or ``1048576``."""
        if isinstance(value, bool):
            raise ConfigError(f"{self.owner}: {name} must be a size in bytes, not {value!r}")
        if isinstance(value, int):
            number = value
        else:
            match = _SIZE.fullmatch(str(value))
            if not match:
                raise ConfigError(
                    f"{self.owner}: {name} must be a size such as {self.size_example},"
                    f" not {value!r}"
                )
            number = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
        if number < 1:
            raise ConfigError(f"{self.owner}: {name} must be at least 1 byte, not {value!r}")
        return number

    def whole(self, name: str, value: int | str, minimum: int) -> int:
        """A whole number, at least `minimum` (``True``/``False`` are refused)."""
        return self._number(int, "a whole number", name, value, minimum)

    def number(self, name: str, value: float | str, minimum: float) -> float:
        """A number, at least `minimum` (NaN and ``True``/``False`` are refused)."""
        return self._number(float, "a number", name, value, minimum)

    def _number(
        self, convert: Callable[[Any], N], kind: str, name: str, value: object, minimum: N
    ) -> N:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = convert(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.owner}: {name} must be {kind}, not {value!r}") from None
        if not number >= minimum:  # also refuses nan
            raise ConfigError(f"{self.owner}: {name} must be at least {minimum}, not {value!r}")
        return number

    def flag(self, name: str, value: bool | str) -> bool:
        """A bool, or a string such as ``true``, ``no`` or ``1``."""
        if isinstance(value, bool):
            return value
        try:
            return strutils.bool_from_string(value, strict=True)
        except ValueError:
            raise ConfigError(
                f"{self.owner}: {name} must be true or false, not {value!r}"
            ) from None

    def retry_policy(
        self,
        retries: int | str,
        backoff: float | str,
        max_backoff: float | str,
        log: logging.Logger,
    ) -> RetryPolicy:
        """The `RetryPolicy` of the options ``retries``, ``backoff`` and ``max_backoff``."""
        return RetryPolicy(
            self.whole("retries", retries, 0),
            self.number("backoff", backoff, 0.0),
            self.number("max_backoff", max_backoff, 0.0),
            log,
        )


@dataclass(slots=True)
class Tries:
    """How many tries a `RetryPolicy.call` made (counted by the function it runs)."""

    count: int = 0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a store retries a request that failed with `TransientError`.

    `retries` tries follow the first one; the waits between them grow
    exponentially from `backoff` seconds up to `max_backoff`, plus up to
    `backoff` of random jitter. Each retry is a warning on `log`.
    """

    retries: int
    backoff: float
    max_backoff: float
    log: logging.Logger

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried while it raises `TransientError`.

        After the last try the error is raised again, saying how many tries
        were made (when there was more than one); other errors are raised
        at once.
        """
        attempts = self.retries + 1
        log = self.log

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s (try %d of %d; retrying in %.2f s)", error, state.attempt_number, attempts, wait
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff, max=self.max_backoff)
            + tenacity.wait_random(0, self.backoff),
            retry=tenacity.retry_if_exception_type(TransientError),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except TransientError as exc:
            if attempts == 1:
                raise
            raise TransientError(f"{exc} (gave up after {attempts} tries)") from None


def run_all(fn: Callable[[int], T], count: int, concurrency: int, name: str) -> list[T]:
    """``[fn(0), ..., fn(count - 1)]``, `concurrency` calls at a time.

    The calls run in threads named after `name`. On the first failure the
    calls not yet started are cancelled, the running ones are waited for,
    and the failure is raised.
    """
    if concurrency <= 1 or count <= 1:
        return [fn(i) for i in range(count)]
    pool = ThreadPoolExecutor(min(concurrency, count), thread_name_prefix=name)
    try:
        futures = [pool.submit(fn, i) for i in range(count)]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: A key prefix shared by at least this many keys of a batch is listed, not HEADed.
LIST_FROM: Final = 16


def batched_sizes(
    keys: Iterable[str],
    *,
    head: Callable[[str], int | None],
    listing: Callable[[str], Iterator[tuple[str, int]]],
    concurrency: int,
) -> dict[str, int]:
    """``{key: size}`` for each of `keys` that exists, asking as little as possible.

    Keys are grouped by their "folder" (the part up to the last ``/``).
    A folder holding at least `LIST_FROM` of the keys is listed once
    (`listing(prefix)` yields ``(key, size)`` of every object under the
    prefix, a page per request); the other keys get one `head(key)` each
    (the size, or None if absent), `concurrency` at a time. Chunk keys
    (``chunks/<aa>/<sha256>``) fall into 256 folders, so a batch of a large
    backup's chunks costs a few hundred listing pages, not one request per
    chunk.
    """
    groups: dict[str, set[str]] = {}
    for key in keys:
        groups.setdefault(validate_key(key).rpartition("/")[0], set()).add(key)
    found: dict[str, int] = {}
    single: list[str] = []
    for folder, members in sorted(groups.items()):
        if folder and len(members) >= LIST_FROM:
            for name, size in listing(folder + "/"):
                if name in members:
                    found[name] = size
        else:
            single.extend(sorted(members))
    sizes = run_all(lambda i: head(single[i]), len(single), concurrency, "stored-sizes")
    found.update((k, n) for k, n in zip(single, sizes, strict=True) if n is not None)
    return found


def body_bytes(data: bytes | memoryview) -> bytes:
    """`data` as bytes, for a request body (requests would iterate a memoryview byte by byte)."""
    return data if isinstance(data, bytes) else bytes(data)


def mask_url(url: str) -> str:
    """`url` without a password in its user-info part."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each of `secrets` and anything that looks like a secret masked.

    Secrets shorter than four characters are left to the patterns, since
    replacing them everywhere would garble the text.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            text = text.replace(secret, MASK)
    return strutils.mask_password(text, secret=MASK)


# -- a total deadline per request ------------------------------------------------------

_current = threading.local()  # .deadline: the `Deadline` of the request this thread runs


class Deadline:
    """The total time one request may take, enforced on its connection's socket.

    Use it as a context manager around one try of one request::

        with Deadline(30.0, "s3 store 'b'", "get 'chunks/ab/..'") as deadline:
            ...  # the request, through a pool `watch_pools` prepared
        # if it failed and deadline.fired: raise deadline.error()

    Connections that the thread takes from a watched pool meanwhile are
    recorded; if the deadline passes first, the watchdog marks it `fired`
    and shuts their sockets down (both directions), so the read or write in
    progress fails at once whatever the socket timeout. Cheap to make: one
    entry in the watchdog's heap, no thread of its own.
    """

    def __init__(self, seconds: float, store: str, what: str) -> None:
        self.seconds = seconds
        self.store = store
        self.what = what
        self.fired = False
        self.expires = 0.0
        self._lock = threading.Lock()
        self._connections: set[Any] = set()
        self._outer: Deadline | None = None
        self._done = False
        self._number = -1  # in the watchdog

    @staticmethod
    def for_body(seconds: float, size: int) -> float:
        """`seconds` plus one second per MiB of a `size`-byte body."""
        return seconds + size / (1 << 20)

    def __enter__(self) -> Deadline:
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        self.expires = time.monotonic() + self.seconds
        self._number = _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
            self._connections.clear()
        _WATCHDOG.forget(self._number)
        _current.deadline = self._outer

    def error(self) -> TransientError:
        """What the store raises for a request this deadline cut off (retried like a timeout)."""
        return TransientError(
            f"{self.store}: {self.what}: cut off after the request deadline of"
            f" {self.seconds:.4g} s (option request_deadline): the store did not finish"
            " answering in time"
        )

    def adopt(self, connection: Any) -> None:
        """Record `connection` as used by this request (shut down if the deadline passes)."""
        with self._lock:
            if not self._done:
                self._connections.add(connection)
            fired = self.fired
        if fired:
            _shut(connection)

    def release(self, connection: Any) -> None:
        """`connection` went back to its pool: another request may use it now."""
        with self._lock:
            self._connections.discard(connection)

    def fire(self) -> None:
        """The deadline passed: shut down every connection of the request (if still running)."""
        with self._lock:
            if self._done:
                return
            self.fired = True
            connections = list(self._connections)
        log.warning("%s: %s: cut off after %.4g s", self.store, self.what, self.seconds)
        for connection in connections:
            _shut(connection)


def within_deadline(seconds: float, store: str, what: str, request: Callable[[], T]) -> T:
    """One try of a request, `request()`, under a `Deadline` of `seconds`.

    Whatever the cut socket makes the client raise once the deadline has
    fired becomes the deadline's `TransientError` (`Deadline.error`); any
    other failure passes through. The Swift and S3 stores wrap each try of
    their ``_call`` in it.
    """
    with Deadline(seconds, store, what) as deadline:
        try:
            return request()
        except Exception:  # whatever the cut socket made the client raise
            if deadline.fired:
                raise deadline.error() from None
            raise


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that fires every `Deadline` whose time has come.

    A heap of (expiry, number) and the running deadlines by number; a
    deadline that ends in time leaves `_live` at once, and its heap entry
    goes when it reaches the top, or when finished entries outnumber the
    live ones (then the heap is rebuilt): memory stays in proportion to the
    requests running, not to those of the last `request_deadline` seconds.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, Deadline] = {}
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> int:
        """Watch `deadline`; its number, for `forget`."""
        with self._cond:
            number = next(self._order)
            self._live[number] = deadline
            heapq.heappush(self._heap, (deadline.expires, number))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="request-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][1] == number:
                self._cond.notify()
            return number

    def forget(self, number: int) -> None:
        """The deadline `number` ended (in time or not): never fire it."""
        with self._cond:
            self._live.pop(number, None)
            if len(self._heap) > 2 * len(self._live) + 1024:
                self._heap = [entry for entry in self._heap if entry[1] in self._live]
                heapq.heapify(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # ended in time: nothing to do
                if not self._heap:
                    self._cond.wait(60.0)
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(min(wait, 60.0))
                    continue
                due = self._live.pop(heapq.heappop(self._heap)[1])
            due.fire()


_WATCHDOG: Final = _Watchdog()
_WATCHED: dict[type, type] = {}
_WATCHED_LOCK: Final = threading.Lock()


def _watched(pool_class: type) -> type:
    """A subclass of the urllib3 connection pool `pool_class` that tells the thread's
    `Deadline` which connection its request uses."""
    with _WATCHED_LOCK:
        found = _WATCHED.get(pool_class)
        if found is not None:
            return found

        class Watched(pool_class):  # type: ignore[misc]
            def _get_conn(self, timeout: float | None = None) -> Any:
                connection = super()._get_conn(timeout)
                deadline = getattr(_current, "deadline", None)
                if deadline is not None:
                    deadline.adopt(connection)
                return connection

            def _put_conn(self, connection: Any) -> None:
                deadline = getattr(_current, "deadline", None)
                if deadline is not None and connection is not None:
                    deadline.release(connection)
                super()._put_conn(connection)

        Watched.__name__ = Watched.__qualname__ = f"Watched{pool_class.__name__}"
        _WATCHED[pool_class] = Watched
        return Watched


def watch_pools(pool_manager: Any) -> bool:
    """Make the urllib3 `PoolManager` `pool_manager` make watched pools (see `Deadline`).

    Pools it made before are cleared (made again, watched, when next
    needed). False if `pool_manager` does not look like a urllib3 pool
    manager (the deadline is then not enforced on it).
    """
    classes = getattr(pool_manager, "pool_classes_by_scheme", None)
    if not isinstance(classes, dict):
        return False
    pool_manager.pool_classes_by_scheme = {scheme: _watched(cls) for scheme, cls in classes.items()}
    pool_manager.clear()
    return True
