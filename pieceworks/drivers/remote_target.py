"""The remote target: a process next to the volumes that pushes them to a store itself.

This is the "backend at wire length from the manager" of the founding
discussion. The target owns a directory of volumes (a `FileDriver` on it)
and answers a small HTTP/JSON API; the manager's `RemoteDriver`
(`pieceworks.drivers.remote`) calls it. For a backup the manager sends only a
`StoreSpec`; the target reads its volume (or a snapshot of it), cuts it into
chunks, hashes and compresses each one and writes the chunk objects of
`pieceworks.protocols.chunks` into the store, then answers with the chunk
list (a `PushedVolume`). No volume byte crosses the manager.

Run it::

    python -m pieceworks.drivers.remote_target --dir /srv/volumes --port 8470 \\
        [--host 127.0.0.1] [--token TOKEN | --token-file FILE]

``--port 0`` picks a free port; the first line on stdout is always
``listening on http://HOST:PORT``, so that a parent process can read it.
Logs go to stderr. `serve` is the same as a function (for the
``pieceworks target serve`` command) and `make_server` gives the server
object without running it.

API (version 1; JSON bodies; ``Authorization: Bearer TOKEN`` when the target
has a token, on everything but ``/v1/health``)::

    GET    /v1/health                              {"ok": true}
    GET    /v1/info                                service, api, codecs, store_drivers
    GET    /v1/volumes                             {"volumes": [{"volume_id", "size"}]}
    POST   /v1/volumes                             {"volume_id", "size"} -> 201
    PUT    /v1/volumes/<id>                        raw bytes: replace the volume
    GET    /v1/volumes/<id>/sha256                 {"volume_id", "size", "sha256"}
    GET    /v1/volumes/<id>/snapshots              {"snapshots": [ids]}
    POST   /v1/volumes/<id>/snapshots              {"snapshot_id"} -> 201
    DELETE /v1/volumes/<id>/snapshots/<sid>        idempotent
    POST   /v1/push     {"source", "store", "chunk_size", "codec"} -> PushedVolume
    POST   /v1/pull     {"target", "size", "store", "chunks"} -> {"bytes_written"}
    POST   /v1/replicate {"source", "peer", "target"} -> {"size", "bytes_sent", "frames"}
    PUT    /v1/volumes/<id>/receive?size=N         frames (see below) -> {"frames", ...}

``source`` is ``{"volume_id", "snapshot_id" (or null)}``, ``target``
``{"volume_id"}``, ``store`` ``{"name", "driver", "options"}``, ``peer``
``{"name", "url", "token" (or null), "timeout" (or null)}`` and a chunk
``[offset, length, sha256, codec, stored_length]``.

Replication between two targets (replicate-to-peer): the manager asks the
source target (``POST /v1/replicate``) to send a volume or snapshot to a
peer target, which it calls itself (``GET /v1/info`` to check the token and
the API, then ``PUT /v1/volumes/<id>/receive?size=N``): no volume byte
crosses the manager. The body of a receive is a stream of frames, sent with
chunked transfer coding (or a known ``Content-Length``)::

    frame      offset u64 | length u32 | sha256 of the data (32 bytes) | data
    end frame  count of data frames u64 | 0 u32 | sha256 of all data frame headers

(big-endian). Only allocated extents are read and all-zero pieces are not
sent; frames are in ascending, non-overlapping order. The peer checks each
frame's sha256 before writing it into a new copy of the volume, and commits
the copy only after a valid end frame at the very end of the body; on any
error or disconnect the copy is discarded and the volume stays as it was.

Errors are ``{"error": {"type", "message", "offset"}}`` where ``type`` names
a `pieceworks.protocols.errors` class (or ``Unauthorized``, ``BadRequest``,
``NoSuchEndpoint``), with a matching status (404 not found, 400 bad input,
401 token, 422 corruption, 503 transient or busy, 500 other).

Long operations (push, pull, snapshot, sha256) answer normally if they finish
within a quarter of a second; otherwise the answer is a chunked
``application/x-ndjson`` stream: a ``{"progress": {...}}`` line at least
every `HEARTBEAT_SECONDS`, then one ``{"result": ...}`` or ``{"error": ...}``
line. The manager's socket timeout therefore bounds silence, not the length
of a push, and a dead target is noticed within that timeout. A manager that
goes away cancels its operation (a pull then leaves the target volume as it
was).

Store options may hold credentials: the values of every option but a few
known harmless ones (`SAFE_OPTIONS`) are masked in every log line and error
body, and request bodies are never logged. So is a peer's token.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import io
import json
import logging
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Final, cast
from urllib.parse import parse_qs, urlsplit

from oslo_utils import strutils

from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.store_opener import known_store_drivers, open_store
from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    ChangeTrackingLost,
    ChunkRef,
    ConfigError,
    CorruptionError,
    DriverNotFound,
    Extent,
    InvalidName,
    IObjectStore,
    NotFound,
    ObjectNotFound,
    PieceworksError,
    PushedVolume,
    ReplicatedVolume,
    SnapshotNotFound,
    SnapshotRef,
    Source,
    StoreSpec,
    TransientError,
    UnsupportedCodec,
    VolumeNotFound,
    VolumeRef,
    VolumeWriter,
    validate_id,
)
from pieceworks.protocols.chunks import (
    CODECS,
    chunk_key,
    codec_of,
    decode_chunk,
    digest_of,
    encode_chunk,
    is_zero,
)

__all__ = [
    "API_VERSION",
    "FRAME_DATA",
    "FRAME_HEADER",
    "HEARTBEAT_SECONDS",
    "MAX_FRAME",
    "PEER_TIMEOUT",
    "SAFE_OPTIONS",
    "Peer",
    "Received",
    "RequestBody",
    "TargetServer",
    "TargetService",
    "chunks_from_json",
    "chunks_to_json",
    "main",
    "make_server",
    "peer_from_json",
    "peer_to_json",
    "protocol_error",
    "pull_volume",
    "push_volume",
    "pushed_from_json",
    "pushed_to_json",
    "read_answer",
    "receive_volume",
    "redact",
    "secret_values",
    "send_volume",
    "serve",
    "spec_from_json",
    "spec_to_json",
]

API_VERSION: Final = 1
#: While a long operation runs, the target writes a line at least this often.
HEARTBEAT_SECONDS: Final = 0.5
#: How long an answer may take before it is streamed with heartbeats.
FIRST_WAIT_SECONDS: Final = 0.25
#: Store options whose values are never secret, so messages may show them.
#: Every other option's value is masked (URLs too: they may carry a password).
SAFE_OPTIONS: Final = frozenset(
    {"path", "durable", "container", "bucket", "prefix", "region", "region_name", "auth_version"}
)
#: Codecs this target can produce (``none`` is implied).
TARGET_CODECS: Final = ("zstd", "zlib")
MIN_CHUNK: Final = 4 << 10
MAX_CHUNK: Final = 64 << 20
MAX_JSON_BODY: Final = 256 << 20
_DRAIN_LIMIT = 256 << 20
_PIECE = 1 << 20
_ID = r"([A-Za-z0-9][A-Za-z0-9._-]{0,127})"
_ZERO_PIECE = bytes(_PIECE)
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^/\s@]+@")
#: Volume bytes in one frame a sending target cuts (frames never cross a multiple of it).
FRAME_DATA: Final = 1 << 20
#: The longest frame a receiving target accepts.
MAX_FRAME: Final = 16 << 20
#: A frame's header: offset (u64), data length (u32), sha256 of the data; big-endian.
FRAME_HEADER: Final = struct.Struct(">QI32s")
#: Seconds of silence a target tolerates from a peer it sends a volume to, by default.
PEER_TIMEOUT: Final = 30.0
NDJSON: Final = "application/x-ndjson"
FRAMES_TYPE: Final = "application/x-pieceworks-frames"
_MAX_LINE = 4096

log = logging.getLogger("pieceworks.remote_target")


# -- the wire format (shared with pieceworks.drivers.remote) -----------------------


def spec_to_json(spec: StoreSpec) -> dict[str, Any]:
    """A `StoreSpec` as JSON (options included: send it only to the target)."""
    return {"name": spec.name, "driver": spec.driver, "options": dict(spec.options)}


def spec_from_json(value: object) -> StoreSpec:
    """The inverse of `spec_to_json`; `InvalidName`/`ValueError` if malformed."""
    if not isinstance(value, dict):
        raise ValueError("store: expected an object {name, driver, options}")
    options = value.get("options") or {}
    if not isinstance(options, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in options.items()
    ):
        raise ValueError("store options: expected an object of strings")
    return StoreSpec(str(value.get("name", "")), str(value.get("driver", "")), options)


def chunks_to_json(chunks: Iterable[ChunkRef]) -> list[list[object]]:
    """Chunk refs as compact arrays ``[offset, length, digest, codec, stored_length]``."""
    return [[c.offset, c.length, c.digest, c.codec, c.stored_length] for c in chunks]


def chunks_from_json(rows: object) -> tuple[ChunkRef, ...]:
    """The inverse of `chunks_to_json`; `ValueError` if malformed."""
    if not isinstance(rows, list):
        raise ValueError("chunks: expected a list")
    out: list[ChunkRef] = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 5:
            raise ValueError(f"chunk {row!r}: expected [offset, length, digest, codec, size]")
        offset, length, digest, codec, stored = row
        if not all(
            isinstance(x, int) and not isinstance(x, bool) for x in (offset, length, stored)
        ):
            raise ValueError(f"chunk {row!r}: offset, length and size must be integers")
        out.append(ChunkRef(offset, length, str(digest), str(codec), stored))
    return tuple(out)


def pushed_to_json(pushed: PushedVolume) -> dict[str, Any]:
    """A `PushedVolume` as JSON."""
    return {
        "size": pushed.size,
        "chunks": chunks_to_json(pushed.chunks),
        "bytes_read": pushed.bytes_read,
        "bytes_written": pushed.bytes_written,
    }


def pushed_from_json(value: Mapping[str, Any]) -> PushedVolume:
    """The inverse of `pushed_to_json`; `ValueError` or `KeyError` if malformed."""
    return PushedVolume(
        int(value["size"]),
        chunks_from_json(value["chunks"]),
        int(value["bytes_read"]),
        int(value["bytes_written"]),
    )


def peer_to_json(peer: BackendSpec) -> dict[str, Any]:
    """How a source target reaches `peer` (a remote backend): name, url, token, timeout.

    It holds the peer's token: send it only to the source target.
    """
    options = peer.options
    return {
        "name": peer.name,
        "url": options.get("url", ""),
        "token": options.get("token") or None,
        "timeout": options.get("timeout") or None,
    }


@dataclass(frozen=True)
class Peer:
    """Another target this one sends a volume to: its address, token and timeout.

    `url` (the property) never shows the token, nor a user or password given
    in the URL (they are not used).
    """

    host: str
    port: int
    base: str = ""
    token: str | None = field(default=None, repr=False)
    timeout: float = PEER_TIMEOUT

    @classmethod
    def parse(cls, url: str, token: str | None = None, timeout: float | str | None = None) -> Peer:
        """Check a peer's options like `RemoteDriver` does; `ConfigError` if bad."""
        parts = urlsplit(url)
        try:
            port = parts.port or 80
        except ValueError:
            port = -1
        if parts.scheme != "http" or not parts.hostname or port < 0:
            raise ConfigError("peer: url must look like http://host:port")
        try:
            seconds = PEER_TIMEOUT if timeout is None else float(timeout)
        except ValueError:
            raise ConfigError(f"peer: timeout must be a number, not {timeout!r}") from None
        if not seconds > 0:
            raise ConfigError(f"peer: timeout must be positive, not {timeout!r}")
        return cls(parts.hostname, port, parts.path.rstrip("/"), token or None, seconds)

    @property
    def url(self) -> str:
        """``http://host:port[/prefix]``."""
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{netloc}:{self.port}{self.base}"

    def headers(self) -> dict[str, str]:
        """Headers of every request to the peer (with its token, if any)."""
        out = {"Connection": "close", "Accept": f"application/json, {NDJSON}"}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out


def peer_from_json(value: object) -> Peer:
    """The inverse of `peer_to_json`; `ConfigError`/`ValueError` if malformed."""
    if not isinstance(value, dict):
        raise ValueError("peer: expected an object {name, url, token, timeout}")
    url, token, timeout = value.get("url"), value.get("token"), value.get("timeout")
    if not isinstance(url, str) or not (token is None or isinstance(token, str)):
        raise ValueError("peer: url and token must be strings")
    if not (timeout is None or isinstance(timeout, (str, int, float))):
        raise ValueError("peer: timeout must be a number")
    return Peer.parse(url, token, timeout)


# -- answers of a target (shared with pieceworks.drivers.remote) ------------------

#: Wire error types a target reports, mapped back to the protocol's errors.
_ERRORS: Final[Mapping[str, type[PieceworksError]]] = {
    cls.__name__: cls
    for cls in (
        VolumeNotFound,
        SnapshotNotFound,
        ObjectNotFound,
        DriverNotFound,
        NotFound,
        InvalidName,
        UnsupportedCodec,
        ConfigError,
        TransientError,
        ChangeTrackingLost,
        BackendError,
    )
}


def protocol_error(status: int, error: object, context: str) -> PieceworksError:
    """The protocol error for a target's error answer.

    `error` is the answer's ``{"type", "message", "offset"}`` (or anything
    else, for an answer that is not the target's); `context` starts the
    message (the target's address and what was asked). A type the target
    names is raised as that error class; without one, the HTTP status
    decides (401/403: `ConfigError`, 502/503/504: `TransientError`, else
    `BackendError`).
    """
    info: Mapping[str, Any] = error if isinstance(error, dict) else {}
    kind = str(info.get("type", ""))
    text = str(info.get("message") or f"HTTP {status}")
    message = f"{context}: {text}"
    if kind == "Unauthorized" or status in {401, 403}:
        return ConfigError(
            f"{context}: the target refused the token ({text}); check the backend's token option"
        )
    if kind == "CorruptionError":
        offset = info.get("offset")
        return CorruptionError(message, offset if isinstance(offset, int) else None)
    cls = _ERRORS.get(kind)
    if cls is not None:
        return cls(message)
    if status in {502, 503, 504}:
        return TransientError(message)
    if kind == "NoSuchEndpoint" or (status == 404 and not kind):
        return BackendError(f"{message} (is this a pieceworks remote target of API 1?)")
    return BackendError(message)


def read_answer(
    response: http.client.HTTPResponse,
    context: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """A target's answer: a plain JSON object, or a progress stream up to its outcome.

    Progress lines are handed to `on_progress(done, total)`; an error answer
    is raised as `protocol_error` (`context` starts its message); a stream
    that ends without an outcome is a `TransientError`.
    """
    if (response.getheader("Content-Type") or "").startswith(NDJSON):
        while line := response.readline():
            message = _json(line)
            if "progress" in message:
                if on_progress is not None:
                    progress = message["progress"]
                    on_progress(int(progress["done"]), int(progress["total"]))
            elif "result" in message:
                return dict(message["result"])
            elif "error" in message:
                raise protocol_error(response.status, message["error"], context)
        raise TransientError(
            f"{context}: the target stopped answering before the outcome (did it stop or restart?)"
        )
    data = response.read()
    if 200 <= response.status < 300:
        return _json(data) if data else {}
    try:
        error = _json(data).get("error")
    except BackendError:
        error = None
    raise protocol_error(response.status, error, context)


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise BackendError(f"the target's answer is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BackendError("the target's answer is not a JSON object")
    return value


# -- secrets -----------------------------------------------------------------------


def secret_values(options: Mapping[str, str]) -> list[str]:
    """The option values to mask: all but those of `SAFE_OPTIONS` (4+ characters)."""
    return sorted(
        {v for k, v in options.items() if k not in SAFE_OPTIONS and len(v) >= 4},
        key=len,
        reverse=True,
    )


def redact(message: str, secrets: Iterable[str]) -> str:
    """`message` with each secret, URL passwords and ``password=...`` forms masked."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = _URL_PASSWORD.sub(r"\1***@", message)
    return str(strutils.mask_password(message, secret="***"))


# -- the data path -----------------------------------------------------------------


class OperationCancelled(PieceworksError):
    """The manager went away; the operation stopped and undid what it could."""


class Job:
    """A long operation's progress and cancel flag, shared with its HTTP handler."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0
        self.cancelled = threading.Event()
        self.started = time.monotonic()

    def check(self) -> None:
        """Raise `OperationCancelled` if the manager went away."""
        if self.cancelled.is_set():
            raise OperationCancelled("the manager went away: operation cancelled")


def _chunk_indices(extents: Sequence[Extent], size: int, chunk_size: int) -> Iterator[int]:
    """Indices of the chunks that intersect `extents`, ascending, each once."""
    last = -1
    for e in sorted(extents):
        end = min(e.end, size)
        if end <= e.offset:
            continue
        first, stop = max(e.offset // chunk_size, last + 1), (end - 1) // chunk_size + 1
        yield from range(first, stop)
        last = max(last, stop - 1)


class _Push:
    """One push: worker threads hash, compress and store the chunks the caller reads."""

    def __init__(self, store: IObjectStore, codec: str) -> None:
        self.store, self.codec = store, codec
        self.lock = threading.Lock()
        self.known: dict[str, tuple[str, int]] = {}
        self.inflight: dict[str, threading.Event] = {}
        self.stop = threading.Event()
        self.bytes_written = 0

    def store_chunk(self, buffer: bytearray, offset: int, length: int) -> ChunkRef | None:
        """Make sure one chunk's object is stored; None for an all-zero chunk."""
        if self.stop.is_set():
            return None
        # A full bytearray compares with one memcmp in is_zero; a slice is copied.
        plain = buffer if length == len(buffer) else buffer[:length]
        if is_zero(plain):
            return None
        digest = digest_of(plain)
        with self.lock:
            hit = self.known.get(digest)
            other = self.inflight.get(digest) if hit is None else None
            if hit is None and other is None:
                self.inflight[digest] = threading.Event()
        if other is not None:  # another worker is storing the same bytes
            other.wait()
            with self.lock:
                hit = self.known.get(digest)
            if hit is None:
                raise BackendError(f"chunk {digest} at offset {offset} could not be stored")
        if hit is not None:
            return ChunkRef(offset, length, digest, hit[0], hit[1])
        stored_as: tuple[str, int] | None = None
        try:
            stored_as = self._store_new(plain, digest, offset)
        finally:
            with self.lock:
                if stored_as is not None:
                    self.known[digest] = stored_as
                self.inflight.pop(digest).set()
        return ChunkRef(offset, length, digest, stored_as[0], stored_as[1])

    def _store_new(self, plain: bytearray, digest: str, offset: int) -> tuple[str, int]:
        """Reuse an intact stored object, else encode and put; (codec, stored length)."""
        key = chunk_key(digest)
        try:
            existing = self.store.get(key)
        except ObjectNotFound:
            existing = None
        if existing is not None:
            try:
                decode_chunk(existing, digest, len(plain), offset)
                return codec_of(existing), len(existing)
            except CorruptionError as exc:
                log.warning("replacing a damaged chunk object %s: %s", key, exc)
        encoded = encode_chunk(plain, self.codec)  # "none" if compressing does not pay
        self.store.put(key, encoded)
        with self.lock:
            self.bytes_written += len(encoded)
        return codec_of(encoded), len(encoded)


def push_volume(
    driver: FileDriver,
    source: Source,
    store: IObjectStore,
    chunk_size: int,
    codec: str,
    *,
    threads: int = 2,
    depth: int = 4,
    job: Job | None = None,
) -> PushedVolume:
    """Write `source` into `store` as content-addressed chunks (push-to-object-store).

    Chunks outside the source's allocated extents are holes and are not
    read; all-zero chunks are holes too. The calling thread reads into at
    most `depth` reused buffers; `threads` workers hash, compress and store
    (each of those releases the GIL). A chunk whose object is already
    stored and intact is not written again. On any error the workers stop
    and the first error is raised; objects already written stay,
    unreferenced, for garbage collection.
    """
    _check_chunking(chunk_size, codec)
    job = job or Job()
    push = _Push(store, codec)
    chunks: list[ChunkRef] = []
    bytes_read = 0
    with closing(driver.open_read(source)) as reader:
        size = reader.size
        indices = _chunk_indices(driver.allocated_extents(source), size, chunk_size)
        job.total = size
        pending: deque[tuple[Future[ChunkRef | None], bytearray, int]] = deque()
        free: list[bytearray] = []
        pool = ThreadPoolExecutor(threads, thread_name_prefix="pieceworks-push")

        def collect() -> None:
            future, buffer, end = pending.popleft()
            ref = future.result()
            free.append(buffer)
            if ref is not None:
                chunks.append(ref)
            job.done = end

        try:
            for index in indices:
                job.check()
                if len(pending) >= depth:
                    collect()
                offset = index * chunk_size
                length = min(chunk_size, size - offset)
                buffer = free.pop() if free else bytearray(min(chunk_size, size))
                n = reader.readinto_at(offset, memoryview(buffer)[:length])
                bytes_read += n
                if n != length:
                    raise BackendError(
                        f"short read at offset {offset}: {n} of {length} bytes; the source"
                        f" is shorter than its size {size}"
                    )
                future = pool.submit(push.store_chunk, buffer, offset, length)
                pending.append((future, buffer, offset + length))
            while pending:
                collect()
        except BaseException:
            push.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    job.done = size
    return PushedVolume(size, tuple(chunks), bytes_read, push.bytes_written)


def _fetch(store: IObjectStore, ref: ChunkRef) -> bytes:
    """One chunk's plain bytes, checked against its hash (`CorruptionError` if not)."""
    try:
        stored = store.get(chunk_key(ref.digest))
    except ObjectNotFound:
        raise CorruptionError(
            f"chunk {ref.digest} at offset {ref.offset} is missing from the store", ref.offset
        ) from None
    return decode_chunk(stored, ref.digest, ref.length, ref.offset)


def pull_volume(
    driver: FileDriver,
    target: VolumeRef,
    size: int,
    store: IObjectStore,
    chunks: Sequence[ChunkRef],
    *,
    threads: int = 2,
    depth: int = 4,
    job: Job | None = None,
) -> int:
    """Make `target` a `size`-byte volume holding `chunks` (pull-from-object-store).

    Workers fetch and check chunks at most `depth` ahead; the calling thread
    writes them in order into a new copy of the volume, committed only when
    every chunk was checked and written. On any error (a corrupt or missing
    chunk raises `CorruptionError` with its offset) the copy is discarded
    and `target` stays as it was. Return the bytes written.
    """
    _check_layout(size, chunks)
    job = job or Job()
    job.total = size
    written = 0
    writer = driver.open_write(target, size)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="pieceworks-pull")
    pending: deque[tuple[Future[bytes], ChunkRef]] = deque()
    try:

        def write_oldest() -> None:
            nonlocal written
            future, ref = pending.popleft()
            writer.write_at(ref.offset, future.result())
            written += ref.length
            job.done = ref.offset + ref.length

        for ref in chunks:
            job.check()
            if len(pending) >= depth:
                write_oldest()
            pending.append((pool.submit(_fetch, store, ref), ref))
        while pending:
            write_oldest()
        job.check()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.abort()
        raise
    pool.shutdown(wait=True)
    writer.commit()
    job.done = size
    return written


def _check_chunking(chunk_size: int, codec: str) -> None:
    if codec not in CODECS:
        raise UnsupportedCodec(f"unknown codec {codec!r}: this target produces zstd, zlib, none")
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ConfigError(
            f"chunk size {chunk_size} out of range: use {MIN_CHUNK} to {MAX_CHUNK} bytes"
        )


def _check_layout(size: int, chunks: Sequence[ChunkRef]) -> None:
    """Refuse chunks that overlap, fall outside the volume or are not sorted."""
    if size < 0:
        raise ValueError(f"negative volume size {size}")
    end = 0
    for ref in chunks:
        chunk_key(ref.digest)  # InvalidName for a malformed digest
        if ref.offset < end or ref.length <= 0 or ref.offset + ref.length > size:
            raise ValueError(
                f"chunk at offset {ref.offset} (length {ref.length}) overlaps another, is"
                f" empty or lies outside the {size}-byte volume"
            )
        if ref.length > MAX_CHUNK:
            raise ValueError(f"chunk at offset {ref.offset} is longer than {MAX_CHUNK} bytes")
        end = ref.offset + ref.length


def _sha256(driver: FileDriver, source: Source, job: Job) -> tuple[int, str]:
    """Size and sha256 of `source`; holes are hashed as zeros without being read."""
    h = hashlib.sha256()
    buffer = bytearray(_PIECE)
    with closing(driver.open_read(source)) as reader:
        size = reader.size
        job.total = size
        position = 0
        for extent in [*driver.allocated_extents(source), Extent(size, 0)]:
            while position < min(extent.offset, size):  # a hole: zeros
                n = min(_PIECE, extent.offset - position)
                h.update(memoryview(_ZERO_PIECE)[:n])
                position += n
            while position < min(extent.end, size):
                job.check()
                n = reader.readinto_at(
                    position, memoryview(buffer)[: min(_PIECE, extent.end - position)]
                )
                if n == 0:
                    raise BackendError(f"short read at offset {position} of {source}")
                h.update(memoryview(buffer)[:n])
                position += n
                job.done = position
    return size, h.hexdigest()


# -- replication between targets: the frame stream ---------------------------------


def _pieces(extents: Sequence[Extent], size: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of the pieces to read: the extents cut at `FRAME_DATA` multiples."""
    position = 0
    for extent in sorted(extents):
        offset, end = max(extent.offset, position), min(extent.end, size)
        while offset < end:
            stop = min(end, (offset // FRAME_DATA + 1) * FRAME_DATA)
            yield offset, stop - offset
            offset = stop
        position = max(position, end)


def _describe(source: Source) -> str:
    if isinstance(source, SnapshotRef):
        return f"snapshot {source.snapshot_id!r} of volume {source.volume_id!r}"
    return f"volume {source.volume_id!r}"


def _peer_failure(exc: BaseException, peer: Peer, what: str) -> PieceworksError:
    """The protocol error for an exchange with `peer` that failed below HTTP."""
    context = f"peer {peer.url}: {what}"
    if isinstance(exc, PieceworksError):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return TransientError(f"{context}: connection refused (is the peer target running?)")
    if isinstance(exc, TimeoutError):
        return TransientError(f"{context}: no answer within {peer.timeout:g} s")
    if isinstance(exc, (OSError, http.client.IncompleteRead)):
        return TransientError(f"{context}: connection lost: {type(exc).__name__}: {exc}")
    return BackendError(f"{context}: bad answer: {type(exc).__name__}: {exc}")


def _peer_call(peer: Peer, method: str, path: str, what: str) -> dict[str, Any]:
    """One small request to `peer`: its JSON answer or the mapped error."""
    conn = http.client.HTTPConnection(peer.host, peer.port, timeout=peer.timeout)
    try:
        conn.request(method, peer.base + path, headers=peer.headers())
        return read_answer(conn.getresponse(), f"peer {peer.url}: {what}")
    except (OSError, http.client.HTTPException) as exc:
        raise _peer_failure(exc, peer, what) from exc
    finally:
        conn.close()


def _answer_after(
    conn: http.client.HTTPConnection, failure: OSError, peer: Peer, what: str
) -> PieceworksError:
    """The error for a send that failed: the peer's own answer if it gave one first.

    A peer that refuses a stream (bad frame, busy, ...) answers and closes,
    and the sender then fails to write; its answer says why.
    """
    if not isinstance(failure, TimeoutError):
        try:
            read_answer(conn.getresponse(), f"peer {peer.url}: {what}")
        except PieceworksError as answered:
            return answered
        except (OSError, http.client.HTTPException):
            pass
    return _peer_failure(failure, peer, what)


def send_volume(
    driver: FileDriver,
    source: Source,
    peer: Peer,
    target: VolumeRef,
    *,
    job: Job | None = None,
) -> ReplicatedVolume:
    """Copy `source` into volume `target` of the target `peer` (replicate-to-peer).

    Checks the token and the API first (``GET /v1/info``), then streams the
    frames of the source's allocated extents (all-zero pieces skipped) as a
    chunked ``PUT /v1/volumes/<target>/receive?size=N``, one reused buffer
    of `FRAME_DATA` bytes at a time, and reads the peer's outcome (a plain
    answer, or progress lines while it commits). Returns the size and the
    volume bytes sent. The peer keeps its old volume on any failure; a job
    cancelled meanwhile (the manager went away) closes the connection
    before the end frame, so the peer discards its copy.
    """
    job = job or Job()
    what = f"send {_describe(source)} as volume {target.volume_id!r}"
    frames = sent = 0
    with closing(driver.open_read(source)) as reader:
        size = reader.size
        extents = driver.allocated_extents(source)
        job.total = size
        info = _peer_call(peer, "GET", "/v1/info", "check the peer")
        if info.get("api") != API_VERSION:
            raise BackendError(
                f"peer {peer.url}: speaks API {info.get('api')!r}, this target {API_VERSION}"
            )
        conn = http.client.HTTPConnection(peer.host, peer.port, timeout=peer.timeout)
        try:
            try:
                conn.putrequest(
                    "PUT",
                    f"{peer.base}/v1/volumes/{target.volume_id}/receive?size={size}",
                    skip_accept_encoding=True,
                )
                for name, value in {
                    **peer.headers(),
                    "Content-Type": FRAMES_TYPE,
                    "Transfer-Encoding": "chunked",
                }.items():
                    conn.putheader(name, value)
                conn.endheaders()
                listing = hashlib.sha256()
                buffer = bytearray(max(1, min(FRAME_DATA, size)))
                for offset, length in _pieces(extents, size):
                    job.check()
                    view = memoryview(buffer)[:length]
                    n = reader.readinto_at(offset, view)
                    if n != length:
                        raise BackendError(
                            f"short read at offset {offset}: {n} of {length} bytes; the"
                            f" source is shorter than its size {size}"
                        )
                    if not is_zero(view):
                        header = FRAME_HEADER.pack(offset, length, hashlib.sha256(view).digest())
                        listing.update(header)
                        conn.send(b"%x\r\n%b" % (len(header) + length, header))
                        conn.send(view)
                        conn.send(b"\r\n")
                        frames += 1
                        sent += length
                    job.done = offset + length
                job.check()
                end = FRAME_HEADER.pack(frames, 0, listing.digest())
                conn.send(b"%x\r\n%b\r\n0\r\n\r\n" % (len(end), end))
            except OSError as exc:
                raise _answer_after(conn, exc, peer, what) from exc
            out = read_answer(conn.getresponse(), f"peer {peer.url}: {what}")
        except CorruptionError as exc:
            # The source's bytes were hashed as read: a frame was damaged on the way.
            raise BackendError(f"{exc} (damaged on the way; the peer discarded its copy)") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _peer_failure(exc, peer, what) from exc
        finally:
            conn.close()
    if out.get("frames") != frames or out.get("size") != size:
        raise BackendError(f"peer {peer.url}: {what}: the peer reports {out}, not {frames} frames")
    job.done = size
    return ReplicatedVolume(size, sent)


class RequestBody:
    """A request body read exactly as sent: by ``Content-Length`` or chunked.

    `rfile` is the connection's reading side; `length` the ``Content-Length``
    or None for chunked transfer coding. A connection that ends (or fails)
    before the body does is a `TransientError` ("the sender went away").
    """

    def __init__(self, rfile: io.BufferedIOBase, length: int | None) -> None:
        self._rfile = rfile
        self._chunked = length is None
        self._left = length or 0
        self._started = self._done = False

    def readinto(self, view: memoryview) -> int:
        """Read up to ``len(view)`` bytes of the body; 0 only at its end."""
        while self._left == 0:
            if self._done or not self._chunked:
                return 0
            self._next_chunk()
        try:
            n = self._rfile.readinto(view[: self._left])
        except OSError as exc:
            raise _gone(exc) from exc
        if not n:
            raise _gone(None)
        self._left -= n
        return n

    def readinto_exact(self, view: memoryview) -> None:
        """Fill `view`; `ValueError` if the body ends first."""
        done = 0
        while done < len(view):
            n = self.readinto(view[done:])
            if n == 0:
                raise ValueError(f"the request body ended {len(view) - done} bytes early")
            done += n

    def at_end(self) -> bool:
        """Whether the whole body has been read (reads one byte if not)."""
        return self.readinto(memoryview(bytearray(1))) == 0

    def drain(self, limit: int) -> None:
        """Read and drop up to `limit` bytes of what is left; never raise."""
        buffer = memoryview(bytearray(_PIECE))
        try:
            while limit > 0 and (n := self.readinto(buffer)):
                limit -= n
        except (PieceworksError, ValueError, OSError):
            return

    def _next_chunk(self) -> None:
        if self._started and self._line():
            raise ValueError("malformed chunked body: no CRLF after a chunk")
        self._started = True
        text = self._line().split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", text):
            raise ValueError(f"malformed chunked body: chunk size {text[:20]!r}")
        self._left = int(text, 16)
        if self._left == 0:
            while self._line():  # trailer fields, up to the empty line
                pass
            self._done = True

    def _line(self) -> bytes:
        try:
            line = self._rfile.readline(_MAX_LINE + 1)
        except OSError as exc:
            raise _gone(exc) from exc
        if not line:
            raise _gone(None)
        if len(line) > _MAX_LINE or not line.endswith(b"\n"):
            raise ValueError("malformed chunked body: line too long")
        return line.rstrip(b"\r\n")


def _gone(exc: OSError | None) -> TransientError:
    why = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return TransientError(f"the sender went away before the end of the request body{why}")


@dataclass
class Received:
    """A volume received in full and checked, not yet committed (`writer.commit`)."""

    writer: VolumeWriter
    size: int
    frames: int
    bytes_written: int


def receive_volume(
    driver: FileDriver,
    target: VolumeRef,
    size: int,
    body: RequestBody,
    *,
    depth: int = 4,
    job: Job | None = None,
) -> Received:
    """Read the frames of a replication into a new copy of volume `target`.

    Each frame's sha256 is checked before it is written (a mismatch is a
    `CorruptionError` with its offset); frames must be in ascending order,
    inside the volume and at most `MAX_FRAME` bytes; the end frame must
    count the data frames and hash their headers, and must end the body.
    The calling thread receives and checks frames into at most `depth`
    reused buffers while one worker thread writes them. On any error (the
    sender gone, a timeout, a bad frame) the copy is discarded and `target`
    stays as it was. The caller commits (or aborts) the returned writer.
    """
    job = job or Job()
    job.total = size
    writer = driver.open_write(target, size)
    pool = ThreadPoolExecutor(1, thread_name_prefix="pieceworks-receive")
    pending: deque[tuple[Future[None], bytearray]] = deque()
    free: list[bytearray] = []
    try:
        header = bytearray(FRAME_HEADER.size)
        listing = hashlib.sha256()
        frames = written = end = 0
        while True:
            job.check()
            body.readinto_exact(memoryview(header))
            offset, length, digest = FRAME_HEADER.unpack(header)
            if length == 0:
                break
            if length > MAX_FRAME or offset < end or offset + length > size:
                raise ValueError(
                    f"frame at offset {offset} ({length} bytes) overlaps the one before, lies"
                    f" outside the {size}-byte volume or is longer than {MAX_FRAME} bytes"
                )
            if len(pending) >= depth:
                future, done = pending.popleft()
                future.result()
                free.append(done)
            buffer = free.pop() if free else bytearray(length)
            if len(buffer) < length:
                buffer = bytearray(length)
            view = memoryview(buffer)[:length]
            body.readinto_exact(view)
            if not hmac.compare_digest(hashlib.sha256(view).digest(), digest):
                raise CorruptionError(
                    f"frame at offset {offset} ({length} bytes) fails its sha256", offset
                )
            pending.append((pool.submit(writer.write_at, offset, view), buffer))
            listing.update(header)
            frames, written, end = frames + 1, written + length, offset + length
            job.done = end
        if offset != frames or not hmac.compare_digest(digest, listing.digest()):
            raise BackendError(
                f"the end frame counts {offset} frames (received {frames}) or does not match"
                " their headers: a frame was lost or changed"
            )
        if not body.at_end():
            raise ValueError("data after the end frame")
        while pending:
            pending.popleft()[0].result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.abort()
        raise
    pool.shutdown(wait=True)
    job.done = size
    return Received(writer, size, frames, written)


# -- the service -------------------------------------------------------------------


class _HTTPProblem(PieceworksError):
    """A request the API refuses before any work: its status and wire type."""

    def __init__(self, status: HTTPStatus, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


#: Wire error types, most specific first (the first class an error is an instance of).
_WIRE_ERRORS: Final[tuple[tuple[type[PieceworksError], HTTPStatus], ...]] = (
    (VolumeNotFound, HTTPStatus.NOT_FOUND),
    (SnapshotNotFound, HTTPStatus.NOT_FOUND),
    (ObjectNotFound, HTTPStatus.NOT_FOUND),
    (DriverNotFound, HTTPStatus.NOT_FOUND),
    (NotFound, HTTPStatus.NOT_FOUND),
    (InvalidName, HTTPStatus.BAD_REQUEST),
    (UnsupportedCodec, HTTPStatus.BAD_REQUEST),
    (ConfigError, HTTPStatus.BAD_REQUEST),
    (CorruptionError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (TransientError, HTTPStatus.SERVICE_UNAVAILABLE),
    (ChangeTrackingLost, HTTPStatus.INTERNAL_SERVER_ERROR),
    (BackendError, HTTPStatus.INTERNAL_SERVER_ERROR),
)


def wire_error(
    exc: BaseException, secrets: Iterable[str] = ()
) -> tuple[HTTPStatus, dict[str, Any]]:
    """The status and ``{"type", "message", "offset"}`` the API reports for `exc`."""
    message = str(exc)
    offset: int | None = None
    if isinstance(exc, _HTTPProblem):
        status, kind = exc.status, exc.kind
    elif isinstance(exc, (ValueError, KeyError)) and not isinstance(exc, PieceworksError):
        status, kind = HTTPStatus.BAD_REQUEST, "BadRequest"
        message = f"malformed request: {type(exc).__name__}: {exc}"
    else:
        status, kind = HTTPStatus.INTERNAL_SERVER_ERROR, "BackendError"
        for cls, code in _WIRE_ERRORS:
            if isinstance(exc, cls):
                status, kind = code, cls.__name__
                break
        else:
            if not isinstance(exc, PieceworksError):
                message = f"internal error: {type(exc).__name__}: {exc}"
        if isinstance(exc, CorruptionError):
            offset = exc.offset
        if isinstance(exc, BackendError) and isinstance(exc.__cause__, FileExistsError):
            status = HTTPStatus.CONFLICT
    return status, {"type": kind, "message": redact(message, secrets), "offset": offset}


class TargetService:
    """What the target does, independent of HTTP: its volumes, token and limits.

    `max_jobs` bounds the pushes, pulls, replications and receives that run
    at once (more are refused with 503, which the manager sees as a
    `TransientError`);
    `threads` is the worker threads of each push or pull. A long operation
    that is not done within `answer_within` seconds is answered as a
    progress stream with a line every `heartbeat` seconds.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        token: str | None = None,
        *,
        max_jobs: int = 4,
        threads: int = 2,
        answer_within: float = FIRST_WAIT_SECONDS,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        if max_jobs < 1 or threads < 1 or answer_within < 0 or heartbeat <= 0:
            raise ConfigError(
                "remote target: max_jobs and threads must be at least 1, answer_within"
                " at least 0 and heartbeat positive"
            )
        self.answer_within, self.heartbeat = answer_within, heartbeat
        self.driver = FileDriver(directory)
        self.token = token or None
        self.threads = threads
        self.jobs = threading.BoundedSemaphore(max_jobs)

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token (always, if none is set)."""
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    # -- admin helpers --

    def info(self) -> dict[str, Any]:
        """What the target is and can do."""
        return {
            "service": "pieceworks-remote-target",
            "api": API_VERSION,
            "codecs": list(TARGET_CODECS),
            "store_drivers": known_store_drivers(),
        }

    def list_volumes(self) -> dict[str, Any]:
        """Every volume with its size."""
        out = []
        for ref in self.driver.list_volumes():
            try:
                with closing(self.driver.open_read(ref)) as reader:
                    out.append({"volume_id": ref.volume_id, "size": reader.size})
            except NotFound:  # deleted meanwhile
                continue
        return {"volumes": out}

    def create_volume(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an empty sparse volume."""
        size = _int(body, "size")
        ref = self.driver.create_volume(_str(body, "volume_id"), size)
        return {"volume_id": ref.volume_id, "size": size}

    def write_volume(
        self, volume_id: str, read: Callable[[int], bytes], length: int
    ) -> dict[str, Any]:
        """Replace a volume with `length` bytes read by `read`; zero pieces stay holes."""
        writer = self.driver.open_write(VolumeRef(volume_id), length)
        written = position = 0
        try:
            while position < length:
                piece = read(min(_PIECE, length - position))
                if not piece:
                    raise BackendError(f"the request body ended at byte {position} of {length}")
                if not is_zero(piece):
                    writer.write_at(position, piece)
                    written += len(piece)
                position += len(piece)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
        return {"volume_id": volume_id, "size": length, "bytes_written": written}

    def volume_sha256(self, volume_id: str, job: Job) -> dict[str, Any]:
        """The sha256 of a volume's content."""
        size, digest = _sha256(self.driver, VolumeRef(volume_id), job)
        return {"volume_id": volume_id, "size": size, "sha256": digest}

    def list_snapshots(self, volume_id: str) -> dict[str, Any]:
        """The ids of a volume's snapshots (`FileDriver` layout: ``.snapshots/<id>/``)."""
        folder = os.path.join(self.driver.root, ".snapshots", validate_id("volume id", volume_id))
        try:
            names = sorted(n for n in os.listdir(folder) if _is_id(n))
        except FileNotFoundError:
            names = []
        if not names and not any(v.volume_id == volume_id for v in self.driver.list_volumes()):
            raise VolumeNotFound(f"no volume {VolumeRef(volume_id)}")
        return {"volume_id": volume_id, "snapshots": names}

    # -- capabilities --

    def create_snapshot(self, volume_id: str, body: Mapping[str, Any], job: Job) -> dict[str, Any]:
        """snapshot: take a snapshot."""
        ref = self.driver.create_snapshot(VolumeRef(volume_id), _str(body, "snapshot_id"))
        return {"volume_id": ref.volume_id, "snapshot_id": ref.snapshot_id}

    def delete_snapshot(self, volume_id: str, snapshot_id: str) -> dict[str, Any]:
        """snapshot: delete a snapshot (idempotent)."""
        self.driver.delete_snapshot(SnapshotRef(volume_id, snapshot_id))
        return {}

    def push(self, body: Mapping[str, Any], job: Job) -> dict[str, Any]:
        """push-to-object-store: write a volume or snapshot into a store."""
        source = _source(body.get("source"))
        spec = spec_from_json(body.get("store"))
        chunk_size, codec = _int(body, "chunk_size"), _str(body, "codec")
        _check_chunking(chunk_size, codec)
        started = time.monotonic()
        pushed = push_volume(
            self.driver, source, open_store(spec), chunk_size, codec, threads=self.threads, job=job
        )
        log.info(
            "push %s -> store %r (%s, %s): %d chunks, %d bytes read, %d written, %.2f s",
            source,
            spec.name,
            spec.driver,
            codec,
            len(pushed.chunks),
            pushed.bytes_read,
            pushed.bytes_written,
            time.monotonic() - started,
        )
        return pushed_to_json(pushed)

    def pull(self, body: Mapping[str, Any], job: Job) -> dict[str, Any]:
        """pull-from-object-store: fill a volume from chunks in a store."""
        target = body.get("target")
        if not isinstance(target, dict):
            raise ValueError("target: expected {volume_id}")
        ref = VolumeRef(str(target.get("volume_id", "")))
        spec = spec_from_json(body.get("store"))
        size, chunks = _int(body, "size"), chunks_from_json(body.get("chunks"))
        _check_layout(size, chunks)
        started = time.monotonic()
        written = pull_volume(
            self.driver, ref, size, open_store(spec), chunks, threads=self.threads, job=job
        )
        log.info(
            "pull store %r (%s) -> %s: %d chunks, %d bytes written, %.2f s",
            spec.name,
            spec.driver,
            ref,
            len(chunks),
            written,
            time.monotonic() - started,
        )
        return {"volume_id": ref.volume_id, "size": size, "bytes_written": written}

    def replicate(self, body: Mapping[str, Any], job: Job) -> dict[str, Any]:
        """replicate-to-peer: send a volume or snapshot to a peer target."""
        source, target = _source(body.get("source")), _target(body.get("target"))
        peer = peer_from_json(body.get("peer"))
        started = time.monotonic()
        done = send_volume(self.driver, source, peer, target, job=job)
        log.info(
            "replicate %s -> %s on peer %s: %d of %d bytes sent, %.2f s",
            source,
            target,
            peer.url,
            done.bytes_sent,
            done.size,
            time.monotonic() - started,
        )
        return {"volume_id": target.volume_id, "size": done.size, "bytes_sent": done.bytes_sent}


def _int(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer")
    return value


def _str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string")
    return value


def _source(value: object) -> Source:
    if not isinstance(value, dict):
        raise ValueError("source: expected {volume_id, snapshot_id}")
    volume_id, snapshot_id = str(value.get("volume_id", "")), value.get("snapshot_id")
    if snapshot_id is None:
        return VolumeRef(volume_id)
    return SnapshotRef(volume_id, str(snapshot_id))


def _target(value: object) -> VolumeRef:
    if not isinstance(value, dict):
        raise ValueError("target: expected {volume_id}")
    return VolumeRef(str(value.get("volume_id", "")))


def _query_int(path: str, name: str) -> int:
    values = parse_qs(urlsplit(path).query).get(name, [])
    if len(values) != 1 or not re.fullmatch(r"[0-9]{1,19}", values[0]):
        raise ValueError(f"{name}: expected ?{name}=N, a non-negative integer")
    return int(values[0])


def _is_id(name: str) -> bool:
    try:
        validate_id("id", name)
    except InvalidName:
        return False
    return True


# -- HTTP --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    action: str
    auth: bool = True
    body: str = "json"  # "json", "raw", "frames" (a replication's stream) or "none"
    long: bool = False
    job: bool = False  # counts against max_jobs
    status: HTTPStatus = HTTPStatus.OK


def _route(method: str, path: str, action: str, **kw: Any) -> _Route:
    return _Route(method, re.compile(path.replace("{id}", _ID) + "$"), action, **kw)


_ROUTES: Final = (
    _route("GET", "/v1/health", "health", auth=False, body="none"),
    _route("GET", "/v1/info", "info", body="none"),
    _route("GET", "/v1/volumes", "list_volumes", body="none"),
    _route("POST", "/v1/volumes", "create_volume", status=HTTPStatus.CREATED),
    _route("PUT", "/v1/volumes/{id}", "write_volume", body="raw"),
    _route("GET", "/v1/volumes/{id}/sha256", "volume_sha256", body="none", long=True),
    _route("GET", "/v1/volumes/{id}/snapshots", "list_snapshots", body="none"),
    _route(
        "POST",
        "/v1/volumes/{id}/snapshots",
        "create_snapshot",
        long=True,
        status=HTTPStatus.CREATED,
    ),
    _route("DELETE", "/v1/volumes/{id}/snapshots/{id}", "delete_snapshot", body="none"),
    _route("POST", "/v1/push", "push", long=True, job=True),
    _route("POST", "/v1/pull", "pull", long=True, job=True),
    _route("POST", "/v1/replicate", "replicate", long=True, job=True),
    _route("PUT", "/v1/volumes/{id}/receive", "receive_volume", body="frames", job=True),
)


class TargetServer(ThreadingHTTPServer):
    """The HTTP server of one `TargetService` (a thread per connection)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: TargetService) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.service = service

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket."""
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _busy() -> _HTTPProblem:
    return _HTTPProblem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "TransientError",
        "the target is busy with other pushes, pulls and replications; try again",
    )


class _Handler(BaseHTTPRequestHandler):
    """One connection, one request (``Connection: close``)."""

    protocol_version = "HTTP/1.1"
    server_version = "pieceworks-remote-target/1"
    sys_version = ""
    timeout = 60  # seconds a client may stay silent while sending a request

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged once, when answered (see `_dispatch`)."""

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # -- dispatch --

    @property
    def service(self) -> TargetService:
        return cast(TargetServer, self.server).service

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        self.close_connection = True
        self._secrets: list[str] = [self.service.token] if self.service.token else []
        self._body_left = 0
        self._body: RequestBody | None = None
        path = self.path.split("?", 1)[0]
        status: int = HTTPStatus.INTERNAL_SERVER_ERROR
        try:
            try:
                self._body_left = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise _HTTPProblem(
                    HTTPStatus.BAD_REQUEST, "BadRequest", "Content-Length is not a number"
                ) from None
            status = self._handle(method, path)
        except Exception as exc:  # every failure is answered, never a dropped connection
            status = self._fail(exc)
        log.info("%s %s -> %d (%.3f s)", method, path, status, time.monotonic() - started)

    def _handle(self, method: str, path: str) -> int:
        route, params = self._match(method, path)
        if route.auth and not self.service.authorized(self.headers.get("Authorization")):
            raise _HTTPProblem(
                HTTPStatus.UNAUTHORIZED,
                "Unauthorized",
                "missing or wrong bearer token for this target",
            )
        body = self._read_json() if route.body == "json" else {}
        if isinstance(body.get("store"), dict):
            options = body["store"].get("options")
            if isinstance(options, dict):
                self._secrets += secret_values({str(k): str(v) for k, v in options.items()})
        if isinstance(body.get("peer"), dict):
            token = body["peer"].get("token")
            if isinstance(token, str) and token:
                self._secrets.append(token)
        action = route.action
        svc = self.service
        if action == "health":
            return self._send_json(HTTPStatus.OK, {"ok": True})
        if action == "write_volume":
            if "Content-Length" not in self.headers:
                raise _HTTPProblem(
                    HTTPStatus.LENGTH_REQUIRED, "BadRequest", "Content-Length is required"
                )
            length, self._body_left = self._body_left, 0
            result = svc.write_volume(params[0], self.rfile.read, length)
            return self._send_json(route.status, result)
        if action == "receive_volume":
            return self._receive(route, params[0])
        if not route.long:
            call: Callable[..., dict[str, Any]] = getattr(svc, action)
            args: list[Any] = list(params)
            if route.body == "json":
                args.append(body)
            return self._send_json(route.status, call(*args))
        return self._run_long(route, params, body)

    def _match(self, method: str, path: str) -> tuple[_Route, tuple[str, ...]]:
        allowed = False
        for route in _ROUTES:
            m = route.pattern.match(path)
            if m is None:
                continue
            if route.method == method:
                return route, m.groups()
            allowed = True
        if allowed:
            raise _HTTPProblem(
                HTTPStatus.METHOD_NOT_ALLOWED, "BadRequest", f"{method} is not allowed on {path}"
            )
        raise _HTTPProblem(
            HTTPStatus.NOT_FOUND,
            "NoSuchEndpoint",
            f"no endpoint {path} in API version {API_VERSION}",
        )

    def _read_json(self) -> dict[str, Any]:
        length, self._body_left = self._body_left, 0
        if length > MAX_JSON_BODY:
            raise _HTTPProblem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "BadRequest", "request body too large"
            )
        raw = self.rfile.read(length) if length else b"{}"
        if len(raw) != length and length:
            raise _HTTPProblem(HTTPStatus.BAD_REQUEST, "BadRequest", "request body cut short")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise _HTTPProblem(
                HTTPStatus.BAD_REQUEST, "BadRequest", f"request body is not JSON: {exc}"
            ) from None
        if not isinstance(value, dict):
            raise _HTTPProblem(HTTPStatus.BAD_REQUEST, "BadRequest", "expected a JSON object")
        return value

    # -- long operations --

    def _run_long(self, route: _Route, params: tuple[str, ...], body: dict[str, Any]) -> int:
        svc = self.service
        if route.job and not svc.jobs.acquire(blocking=False):
            raise _busy()
        job = Job()
        call: Callable[..., dict[str, Any]] = getattr(svc, route.action)
        args: list[Any] = [*params, body] if route.body == "json" else list(params)
        future = self._start(lambda: call(*args, job), route.action, release=route.job)
        return self._deliver(route.status, future, job)

    def _start(
        self, work: Callable[[], dict[str, Any]], name: str, *, release: bool
    ) -> Future[dict[str, Any]]:
        """Run `work` on its own thread; release a job slot after it if `release`."""
        svc = self.service
        future: Future[dict[str, Any]] = Future()

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(work())
                    except BaseException as exc:
                        future.set_exception(exc)
            finally:
                if release:
                    svc.jobs.release()

        threading.Thread(target=run, name=f"pieceworks-{name}", daemon=True).start()
        return future

    def _deliver(self, status: HTTPStatus, future: Future[dict[str, Any]], job: Job) -> int:
        """Answer with `future`'s outcome: plainly if quick, else as a progress stream."""
        if wait([future], timeout=self.service.answer_within).done:
            exc = future.exception()
            if exc is not None:
                raise exc
            return self._send_json(status, future.result())
        return self._stream(future, job)

    def _receive(self, route: _Route, volume_id: str) -> int:
        """``PUT /v1/volumes/<id>/receive``: read a replication's frames, then commit.

        The body is read here, on the connection's thread; the commit (an
        fsync of the whole copy) runs as a long operation with heartbeats.
        """
        svc = self.service
        size = _query_int(self.path, "size")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._body = RequestBody(self.rfile, None)
        elif "Content-Length" in self.headers:
            self._body = RequestBody(self.rfile, self._body_left)
            self._body_left = 0
        else:
            raise _HTTPProblem(
                HTTPStatus.LENGTH_REQUIRED, "BadRequest", "Content-Length or chunked body required"
            )
        if not svc.jobs.acquire(blocking=False):
            raise _busy()
        job = Job()
        started = time.monotonic()
        try:
            received = receive_volume(svc.driver, VolumeRef(volume_id), size, self._body, job=job)
        except BaseException:
            svc.jobs.release()
            raise
        self._body = None

        def commit() -> dict[str, Any]:
            received.writer.commit()
            log.info(
                "received volume %r: %d frames, %d of %d bytes written, %.2f s",
                volume_id,
                received.frames,
                received.bytes_written,
                size,
                time.monotonic() - started,
            )
            return {
                "volume_id": volume_id,
                "size": size,
                "frames": received.frames,
                "bytes_written": received.bytes_written,
            }

        return self._deliver(route.status, self._start(commit, "commit", release=True), job)

    def _stream(self, future: Future[dict[str, Any]], job: Job) -> int:
        """Answer with progress lines (one at once) until `future` is done, then its outcome."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

        def progress() -> dict[str, Any]:
            seconds = round(time.monotonic() - job.started, 3)
            return {"progress": {"done": job.done, "total": job.total, "seconds": seconds}}

        try:
            # A streamed answer opens with a progress line at once, then one
            # per heartbeat, so the manager knows the operation is under way.
            self._write_chunk(progress())
            while not wait([future], timeout=self.service.heartbeat).done:
                self._write_chunk(progress())
        except OSError as exc:
            job.cancelled.set()
            log.warning("the manager went away (%s): cancelling the operation", exc)
            wait([future])
            return 499
        failure = future.exception()
        if failure is None:
            line: dict[str, Any] = {"result": future.result()}
            status: int = HTTPStatus.OK
        else:
            status, error = wire_error(failure, self._secrets)
            self._log_failure(failure, error)
            line = {"error": error}
        try:
            self._write_chunk(line)
            self.wfile.write(b"0\r\n\r\n")
        except OSError as err:
            log.warning("could not deliver the outcome: the manager went away (%s)", err)
        return status

    def _write_chunk(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        self.wfile.flush()

    # -- answers --

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> int:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        return int(status)

    def _fail(self, exc: Exception) -> int:
        status, error = wire_error(exc, self._secrets)
        self._log_failure(exc, error)
        self._drain()
        try:
            return self._send_json(status, {"error": error})
        except OSError:
            return int(status)

    def _log_failure(self, exc: BaseException, error: Mapping[str, Any]) -> None:
        log.warning(
            "%s %s failed: %s: %s", self.command, self.path, error["type"], error["message"]
        )
        if error["type"] == "BackendError" and not isinstance(exc, PieceworksError):
            # Frames only: the exception's own text may hold a secret (redacted above).
            log.warning("internal error at:\n%s", "".join(traceback.format_tb(exc.__traceback__)))

    def _drain(self) -> None:
        """Read the unread request body, so the client can read the error answer."""
        body, self._body = self._body, None
        if body is not None:
            body.drain(_DRAIN_LIMIT)
            return
        left, self._body_left = self._body_left, 0
        if left > _DRAIN_LIMIT:
            return
        try:
            while left > 0:
                piece = self.rfile.read(min(_PIECE, left))
                if not piece:
                    return
                left -= len(piece)
        except OSError:
            return


# -- running it --------------------------------------------------------------------


def make_server(
    directory: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    *,
    max_jobs: int = 4,
    threads: int = 2,
    answer_within: float = FIRST_WAIT_SECONDS,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> TargetServer:
    """A bound (not yet serving) target server; port 0 picks a free port.

    The keyword options are those of `TargetService`.
    """
    service = TargetService(
        directory,
        token,
        max_jobs=max_jobs,
        threads=threads,
        answer_within=answer_within,
        heartbeat=heartbeat,
    )
    if not token and host not in {"127.0.0.1", "::1", "localhost"}:
        log.warning("serving on %s without a token: anyone who reaches it can use it", host)
    return TargetServer((host, port), service)


def serve(
    directory: str | os.PathLike[str],
    host: str,
    port: int,
    token: str | None,
    ready: Callable[[int], None] | None = None,
    *,
    max_jobs: int = 4,
    threads: int = 2,
    answer_within: float = FIRST_WAIT_SECONDS,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> None:
    """Serve the target until interrupted (Ctrl-C, or SIGTERM in the main thread).

    `ready` is called with the bound port once requests are accepted. The
    keyword options are those of `TargetService`.
    """
    server = make_server(
        directory,
        host,
        port,
        token,
        max_jobs=max_jobs,
        threads=threads,
        answer_within=answer_within,
        heartbeat=heartbeat,
    )
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    with server:
        if in_main:
            previous = signal.signal(signal.SIGTERM, stop)
        try:
            log.info("serving volumes in %s on %s", server.service.driver.root, server.url)
            if ready is not None:
                ready(server.server_port)
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            return f.read().strip() or None
    return args.token or os.environ.get("PIECEWORKS_TARGET_TOKEN") or None


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m pieceworks.drivers.remote_target"
) -> int:
    """``python -m pieceworks.drivers.remote_target`` (or ``pieceworks target serve``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a directory of volumes to a pieceworks manager (remote driver).",
    )
    parser.add_argument("--dir", required=True, help="directory of volumes (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    parser.add_argument(
        "--token", help="bearer token the manager must send (or PIECEWORKS_TARGET_TOKEN)"
    )
    parser.add_argument("--token-file", help="read the token from this file")
    parser.add_argument(
        "--max-jobs", type=int, default=4, help="pushes, pulls, replications and receives at once"
    )
    parser.add_argument("--threads", type=int, default=2, help="worker threads per push or pull")
    parser.add_argument(
        "--answer-within",
        type=float,
        default=FIRST_WAIT_SECONDS,
        help="seconds before a long operation is answered as a progress stream",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT_SECONDS,
        help="seconds between progress lines while a long operation runs",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        os.makedirs(args.dir, mode=0o700, exist_ok=True)
        token = _token(args)

        def ready(port: int) -> None:
            print(f"listening on http://{args.host}:{port}", flush=True)

        serve(
            args.dir,
            args.host,
            args.port,
            token,
            ready,
            max_jobs=args.max_jobs,
            threads=args.threads,
            answer_within=args.answer_within,
            heartbeat=args.heartbeat,
        )
    except (PieceworksError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
