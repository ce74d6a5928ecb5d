"""The remote target's wire protocol: API table, JSON codecs, errors, frames, secrets.

Shared by both sides: the target (`pieceworks.drivers.remote.service`,
`.http`, `.transfer`) and the manager's `RemoteDriver`
(`pieceworks.drivers.remote.client`), which imports this module only.

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
    POST   /v1/push     {"source", "store", "chunk_size", "codec", "known"} -> PushedVolume
    POST   /v1/pull     {"target", "size", "store", "chunks"} -> {"bytes_written"}
    POST   /v1/replicate {"source", "peer", "target"} -> {"size", "bytes_sent", "frames"}
    PUT    /v1/volumes/<id>/receive?size=N         frames (see below) -> {"frames", ...}
    POST   /v1/sweep    {"dry_run"} -> {"items": [{"path", "left_behind", "reason"}]}

``sweep`` removes (unless ``dry_run``) the ``.incoming`` copies and snapshot
temporaries no live write owns: those of a dead process, and those of the
target's own process for a volume it no longer writes; ``pieceworks
recover`` on the manager calls it. The target also sweeps when it starts
and before each write of a volume.

``source`` is ``{"volume_id", "snapshot_id" (or null)}``, ``target``
``{"volume_id"}``, ``store`` ``{"name", "driver", "options"}``, ``peer``
``{"name", "url", "token" (or null), "timeout" (or null)}`` and a chunk
``[offset, length, sha256, codec, stored_length]``.

A push's ``known`` (optional, a list of chunks; incremental-offload) lists
chunks the manager's manifests reference, as recorded there (the parent's):
the target reuses one whose object the store holds at that
``stored_length`` without reading it back, and writes a missing or
resized one again. Its answer then says ``"chunks_known": N`` (how many it
took). A target older than ``known`` ignores the field, answers without
``chunks_known`` and reads every stored chunk back instead (still
correct, only slow); the manager logs that once per target. An older
manager sends no ``known``: the target reads back every chunk it finds
stored, as before.

Replication between two targets (replicate-to-peer): the manager asks the
source target (``POST /v1/replicate``) to send a volume or snapshot to a
peer target, which it calls itself (``GET /v1/info`` to check the token and
the API, then ``PUT /v1/volumes/<id>/receive?size=N``): no volume byte
crosses the manager. The body of a receive is a stream of frames, sent with
chunked transfer coding (or a known ``Content-Length``)::

    frame      offset u64 | length u32 | sha256 of the data (32 bytes) | data
    end frame  count of data frames u64 | 0 u32 | sha256 of all data frame headers

(big-endian, `FRAME_HEADER`). Only allocated extents are read and all-zero
pieces are not sent; frames are in ascending, non-overlapping order. The
peer checks each frame's sha256 before writing it into a new copy of the
volume, and commits the copy only after a valid end frame at the very end
of the body; on any error or disconnect the copy is discarded and the
volume stays as it was.

Errors are ``{"error": {"type", "message", "offset"}}`` where ``type`` names
a `pieceworks.protocols.errors` class (or ``Unauthorized``, ``BadRequest``,
``NoSuchEndpoint``), with a matching status (404 not found, 400 bad input,
401 token, 422 corruption, 503 transient or busy, 500 other): `wire_error`
on the target's side, `protocol_error` on the manager's.

Long operations (push, pull, snapshot, sha256) answer normally if they finish
within `FIRST_WAIT_SECONDS`; otherwise the answer is a chunked
``application/x-ndjson`` stream: a ``{"progress": {...}}`` line at least
every `HEARTBEAT_SECONDS`, then one ``{"result": ...}`` or ``{"error": ...}``
line (`read_answer` reads both forms).

Store options may hold credentials: the values of every option but a few
known harmless ones (`SAFE_OPTIONS`) are masked in every log line and error
body (`secret_values`, `redact`), and request bodies are never logged. So is
a peer's token.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

from oslo_utils import strutils

from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    ChangeTrackingLost,
    ChunkRef,
    ConfigError,
    CorruptionError,
    DriverNotFound,
    InvalidName,
    NotFound,
    ObjectNotFound,
    PieceworksError,
    PushedVolume,
    ShortRead,
    SnapshotNotFound,
    StoreSpec,
    TransientError,
    UnsupportedCodec,
    VolumeExists,
    VolumeNotFound,
)
from pieceworks.protocols.chunks import (
    CODECS,
    HEADER_BYTES,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    chunk_key,
)
from pieceworks.protocols.encryption import StoreKeys
from pieceworks.protocols.values import chunks_from_json, chunks_to_json

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
#: The chunk sizes a push may ask for: the range every backup has (`pieceworks.protocols.chunks`).
MIN_CHUNK: Final = MIN_CHUNK_SIZE
MAX_CHUNK: Final = MAX_CHUNK_SIZE
MAX_JSON_BODY: Final = 256 << 20
#: Bytes read or written at a time when a volume is copied piece by piece.
PIECE: Final = 1 << 20
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


def keys_to_json(keys: StoreKeys) -> dict[str, str]:
    """An encrypted store's derived keys for a sealed push or pull (base64; secret)."""
    return {
        "object_key": base64.b64encode(keys.object_key).decode("ascii"),
        "chunk_id_key": base64.b64encode(keys.chunk_id_key).decode("ascii"),
    }


def keys_from_json(value: object) -> StoreKeys | None:
    """The keys `keys_to_json` sent, or None when the request carries none (a plain store)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("keys: expected {object_key, chunk_id_key}")
    try:
        object_key = base64.b64decode(str(value["object_key"]), validate=True)
        chunk_id_key = base64.b64decode(str(value["chunk_id_key"]), validate=True)
    except (KeyError, ValueError) as exc:
        raise ValueError("keys: expected base64 object_key and chunk_id_key") from exc
    if len(object_key) != 32 or len(chunk_id_key) != 32:
        raise ValueError("keys: each key has 32 bytes")
    return StoreKeys.from_keys(object_key, chunk_id_key)


def known_from_json(value: object) -> tuple[ChunkRef, ...]:
    """A push's ``known`` chunks (none when the request has no such field).

    Each must be a well-formed chunk row (`chunks_from_json`) with a valid
    digest (`InvalidName` if not), a length of 1 to `MAX_CHUNK` bytes, a
    codec of `CODECS` and a stored length of at least a chunk header
    (`ValueError` if not): a reused row goes into the pushed chunk list,
    and so into a manifest, as it is.
    """
    if value is None:
        return ()
    chunks = chunks_from_json(value)
    for ref in chunks:
        chunk_key(ref.digest)
        if not (0 < ref.length <= MAX_CHUNK and ref.codec in CODECS):
            raise ValueError(f"known chunk {ref.digest}: bad length {ref.length} or codec")
        if ref.stored_length < HEADER_BYTES:
            raise ValueError(f"known chunk {ref.digest}: stored length {ref.stored_length}")
    return chunks


def pushed_to_json(pushed: PushedVolume) -> dict[str, Any]:
    """A `PushedVolume` as JSON."""
    return {
        "size": pushed.size,
        "chunks": chunks_to_json(pushed.chunks),
        "bytes_read": pushed.bytes_read,
        "bytes_written": pushed.bytes_written,
        "chunks_written": pushed.chunks_written,
    }


def pushed_from_json(value: Mapping[str, Any]) -> PushedVolume:
    """The inverse of `pushed_to_json`; `ValueError` or `KeyError` if malformed.

    ``chunks_written`` is optional (None): an older target does not send it.
    """
    written = value.get("chunks_written")
    return PushedVolume(
        int(value["size"]),
        chunks_from_json(value["chunks"]),
        int(value["bytes_read"]),
        int(value["bytes_written"]),
        None if written is None else int(written),
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
        VolumeExists,
        SnapshotNotFound,
        ObjectNotFound,
        DriverNotFound,
        NotFound,
        InvalidName,
        UnsupportedCodec,
        ConfigError,
        TransientError,
        ChangeTrackingLost,
        ShortRead,
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


# -- errors as the target reports them ----------------------------------------------


class HTTPProblem(PieceworksError):
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
    (VolumeExists, HTTPStatus.CONFLICT),
    (InvalidName, HTTPStatus.BAD_REQUEST),
    (UnsupportedCodec, HTTPStatus.BAD_REQUEST),
    (ConfigError, HTTPStatus.BAD_REQUEST),
    (CorruptionError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (TransientError, HTTPStatus.SERVICE_UNAVAILABLE),
    (ChangeTrackingLost, HTTPStatus.INTERNAL_SERVER_ERROR),
    (ShortRead, HTTPStatus.INTERNAL_SERVER_ERROR),
    (BackendError, HTTPStatus.INTERNAL_SERVER_ERROR),
)


def wire_error(
    exc: BaseException, secrets: Iterable[str] = ()
) -> tuple[HTTPStatus, dict[str, Any]]:
    """The status and ``{"type", "message", "offset"}`` the API reports for `exc`."""
    message = str(exc)
    offset: int | None = None
    if isinstance(exc, HTTPProblem):
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
