"""The remote driver: the manager's side of a backend at wire length.

`RemoteDriver` drives a remote target (`pieceworks.drivers.remote.server`),
a process that runs next to the volumes and owns them. It provides exactly
five capabilities, all carried out by the target:

* ``snapshot`` -- the target takes and deletes snapshots;
* ``push-to-object-store`` -- the target reads the volume (or snapshot),
  chunks, hashes and compresses it and writes the chunk objects into the
  store itself; the manager receives only the chunk list;
* ``pull-from-object-store`` -- the target reads and checks the chunks and
  fills the volume itself;
* ``compress`` -- the codecs the target can apply (asked of the target);
* ``replicate-to-peer`` -- the target sends a volume (or snapshot) straight
  to another remote target (a backend with driver ``remote`` and a ``url``
  option, and its ``token``), sparse-aware and hashed frame by frame; the
  manager sends one request and receives the outcome.

and two extensions of push and pull: ``sealed-offload`` (into an encrypted
store: the store's derived keys travel with the request) and
``incremental-offload`` (the manager sends the parent's chunks, which the
target checks by size instead of reading their objects back).

It has no stream-out and no stream-in, on purpose: a volume's bytes never
pass through the manager. The common algorithms therefore back it up by
offload and restore into it by offload (pull); a backup it made restores
into any other backend with stream-in, since the store holds ordinary chunk
objects. Replication to another remote target is native (target to target)
or via a store (push, then pull).

Configuration (backend options)::

    driver = "remote"
    url = "http://10.0.0.7:8470"     # the target
    token = "..."                      # optional bearer token
    timeout = "30"                     # seconds of silence tolerated

`timeout` bounds each wait on the connection (connect, send, each read), not
an operation's length: while it works, the target sends a progress line at
least every `HEARTBEAT_SECONDS` (half a second by default), so a long push
keeps going and a dead or stuck target is noticed after `timeout` seconds.
Keep it well above the target's heartbeat.

Errors come back as the protocol's errors: `VolumeNotFound`,
`SnapshotNotFound`, `CorruptionError` (with the chunk's offset),
`UnsupportedCodec`, `ConfigError` (a bad store spec or a refused token,
also the peer's), `TransientError` (connection refused or lost, timeout,
503; also between the two targets of a replication) and `BackendError` for
the rest, each message starting with the target's address. No message
shows a token.

`wire_bytes` counts every byte the driver sent to and received from the
target on its sockets (HTTP headers included): the tests use it to prove
that a backup moves no volume data through the manager.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, cast
from urllib.parse import urlsplit

from zope.interface import implementer

from pieceworks.drivers.remote.protocol import (
    NDJSON,
    Peer,
    keys_to_json,
    peer_to_json,
    protocol_error,
    pushed_from_json,
    read_answer,
    spec_to_json,
)
from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    ChunkRef,
    Compress,
    ConfigError,
    PieceworksError,
    PullFromObjectStore,
    PushedVolume,
    PushToObjectStore,
    ReplicatedVolume,
    ReplicateToPeer,
    Snapshot,
    SnapshotRef,
    Source,
    StoreSpec,
    TransientError,
    VolumeRef,
    validate_id,
)
from pieceworks.protocols.encryption import StoreKeys
from pieceworks.protocols.offload import IIncrementalOffload, ISealedOffload
from pieceworks.protocols.os_errors import os_error_text
from pieceworks.protocols.values import chunks_to_json

__all__ = ["DEFAULT_TIMEOUT", "RemoteDriver", "protocol_error"]

DEFAULT_TIMEOUT: Final = 30.0
log = logging.getLogger(__name__)


class _CountingReader(io.RawIOBase):
    """A socket's raw reading side (``SocketIO``), counting every byte received."""

    def __init__(self, raw: io.RawIOBase, count: Callable[[int, int], None]) -> None:
        super().__init__()
        self._raw, self._count = raw, count

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        n = self._raw.readinto(buffer)
        if n:
            self._count(0, n)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _CountingSocket:
    """A connected socket whose ``sendall`` and ``makefile`` count bytes.

    `http.client` uses exactly these (plus ``close``); anything else is
    passed to the socket. The reading side is the socket's own unbuffered
    file, so the socket stays open until both are closed, as usual.
    """

    def __init__(self, sock: socket.socket, count: Callable[[int, int], None]) -> None:
        self._sock, self._count = sock, count

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._sock.sendall(data, flags)
        self._count(memoryview(data).nbytes, 0)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"unsupported mode {mode!r}")
        raw = cast(io.RawIOBase, self._sock.makefile("rb", buffering=0))
        return io.BufferedReader(_CountingReader(raw, self._count))

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Connection(http.client.HTTPConnection):
    """An HTTP connection whose socket counts the bytes it moves."""

    def __init__(
        self, host: str, port: int, timeout: float, count: Callable[[int, int], None]
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._count = count

    def connect(self) -> None:
        super().connect()
        self.sock = cast(socket.socket, _CountingSocket(self.sock, self._count))


@implementer(ISealedOffload, IIncrementalOffload)
class RemoteDriver(Snapshot, PushToObjectStore, PullFromObjectStore, Compress, ReplicateToPeer):
    """A backend whose volumes live in a remote target process (see the module doc).

    `url` is the target's ``http://host:port`` (a path prefix is kept, for
    a target behind a reverse proxy); `token` the bearer token it expects;
    `timeout` the seconds of silence tolerated on a connection. Options from
    a configuration file may be strings.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float | str = DEFAULT_TIMEOUT,
        **unknown: object,
    ) -> None:
        if unknown:
            raise ConfigError(f"remote driver: unknown option(s): {', '.join(sorted(unknown))}")
        parts = urlsplit(str(url))
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"remote driver: url must look like http://host:port, not {str(url)!r}"
            )
        try:
            seconds = float(timeout)
        except ValueError:
            raise ConfigError(f"remote driver: timeout must be a number, not {timeout!r}") from None
        if not seconds > 0:
            raise ConfigError(f"remote driver: timeout must be positive, not {timeout!r}")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise ConfigError(f"remote driver: bad port in url {str(url)!r}: {exc}") from None
        self._host, self._port = parts.hostname, port
        self._base = parts.path.rstrip("/")
        self._token = token or None
        self._timeout = seconds
        netloc = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{netloc}:{port}{self._base}"
        self._lock = threading.Lock()
        self._sent = self._received = 0
        #: The target's last progress report of a long operation (done, total).
        self.last_progress: tuple[int, int] | None = None
        self._warned_known = False  # logged that the target ignores a push's known chunks

    def __repr__(self) -> str:
        return f"RemoteDriver({self._url!r})"

    @property
    def url(self) -> str:
        """The target's base URL (never the token)."""
        return self._url

    # -- wire accounting --------------------------------------------------

    def _count(self, sent: int, received: int) -> None:
        with self._lock:
            self._sent += sent
            self._received += received

    @property
    def wire_bytes(self) -> int:
        """Every byte sent to and received from the target so far (headers included)."""
        with self._lock:
            return self._sent + self._received

    @property
    def wire_sent(self) -> int:
        """Bytes sent to the target so far."""
        with self._lock:
            return self._sent

    @property
    def wire_received(self) -> int:
        """Bytes received from the target so far."""
        with self._lock:
            return self._received

    # -- snapshot ---------------------------------------------------------

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        validate_id("snapshot id", snapshot_id)
        out = self._call(
            "POST",
            f"/v1/volumes/{volume.volume_id}/snapshots",
            {"snapshot_id": snapshot_id},
            what=f"create a snapshot of volume {volume.volume_id!r}",
        )
        return SnapshotRef(str(out["volume_id"]), str(out["snapshot_id"]))

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        self._call(
            "DELETE",
            f"/v1/volumes/{snapshot.volume_id}/snapshots/{snapshot.snapshot_id}",
            what=f"delete snapshot {snapshot.snapshot_id!r} of {snapshot.volume_id!r}",
        )

    # -- push-to-object-store / pull-from-object-store ----------------------

    def push_to_store(
        self, source: Source, store: StoreSpec, chunk_size: int, codec: str
    ) -> PushedVolume:
        return self._push(source, store, chunk_size, codec, None)

    def push_to_sealed_store(
        self, source: Source, store: StoreSpec, chunk_size: int, codec: str, keys: StoreKeys
    ) -> PushedVolume:
        """sealed-offload: the target seals what it writes (keys travel in the request body)."""
        return self._push(source, store, chunk_size, codec, keys)

    def push_incremental(
        self,
        source: Source,
        store: StoreSpec,
        chunk_size: int,
        codec: str,
        known: Sequence[ChunkRef],
        keys: StoreKeys | None,
    ) -> PushedVolume:
        """incremental-offload: the target reuses `known` chunks after a size check.

        They travel in the request (``known``, one row per distinct digest);
        a target older than that field ignores it and reads every chunk it
        finds stored back instead, which this logs once per driver.
        """
        return self._push(source, store, chunk_size, codec, keys, known)

    def _push(
        self,
        source: Source,
        store: StoreSpec,
        chunk_size: int,
        codec: str,
        keys: StoreKeys | None,
        known: Sequence[ChunkRef] = (),
    ) -> PushedVolume:
        snapshot_id = source.snapshot_id if isinstance(source, SnapshotRef) else None
        body: dict[str, Any] = {
            "source": {"volume_id": source.volume_id, "snapshot_id": snapshot_id},
            "store": spec_to_json(store),
            "chunk_size": chunk_size,
            "codec": codec,
        }
        if keys is not None:
            body["keys"] = keys_to_json(keys)
        if known:
            body["known"] = chunks_to_json({ref.digest: ref for ref in known}.values())
        out = self._call(
            "POST", "/v1/push", body, what=f"push {_describe(source)} to store {store.name!r}"
        )
        if known and "chunks_known" not in out and not self._warned_known:
            self._warned_known = True
            log.warning(
                "remote target %s predates incremental-offload: it read every chunk it found"
                " in store %r back to check it; upgrade it to have it check their sizes",
                self._url,
                store.name,
            )
        try:
            return pushed_from_json(out)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"{self._url}: malformed push result: {exc}") from exc

    def pull_from_store(
        self, target: VolumeRef, size: int, store: StoreSpec, chunks: Sequence[ChunkRef]
    ) -> None:
        self._pull(target, size, store, chunks, None)

    def pull_from_sealed_store(
        self,
        target: VolumeRef,
        size: int,
        store: StoreSpec,
        chunks: Sequence[ChunkRef],
        keys: StoreKeys,
    ) -> None:
        """sealed-offload: the target opens what it reads (keys travel in the request body)."""
        self._pull(target, size, store, chunks, keys)

    def _pull(
        self,
        target: VolumeRef,
        size: int,
        store: StoreSpec,
        chunks: Sequence[ChunkRef],
        keys: StoreKeys | None,
    ) -> None:
        body: dict[str, Any] = {
            "target": {"volume_id": target.volume_id},
            "size": size,
            "store": spec_to_json(store),
            "chunks": chunks_to_json(chunks),
        }
        if keys is not None:
            body["keys"] = keys_to_json(keys)
        self._call(
            "POST",
            "/v1/pull",
            body,
            what=f"pull volume {target.volume_id!r} from store {store.name!r}",
        )

    # -- replicate-to-peer ------------------------------------------------

    def accepts_peer(self, peer: BackendSpec) -> bool:
        """Another remote target: driver ``remote`` with an ``http://host:port`` url.

        Answered from the spec alone; whether the target can reach the peer
        (and the peer takes its token) shows when it tries.
        """
        url = peer.options.get("url")
        if peer.driver != "remote" or not url:
            return False
        try:
            Peer.parse(str(url))
        except ConfigError:
            return False
        return True

    def replicate_to(
        self, source: Source, peer: BackendSpec, target: VolumeRef
    ) -> ReplicatedVolume:
        """Have the target send `source` to the peer target as volume `target`.

        One request (``POST /v1/replicate``), answered with progress lines
        while the two targets copy; the peer's token travels in its body
        and appears in no message. The peer keeps its old volume unless
        the whole copy arrived intact.
        """
        what = f"replicate {_describe(source)} to volume {target.volume_id!r} of {peer.name!r}"
        if not self.accepts_peer(peer):
            raise BackendError(
                f"{self._url}: {what}: backend {peer.name!r} is not a remote target with a url"
            )
        snapshot_id = source.snapshot_id if isinstance(source, SnapshotRef) else None
        out = self._call(
            "POST",
            "/v1/replicate",
            {
                "source": {"volume_id": source.volume_id, "snapshot_id": snapshot_id},
                "peer": peer_to_json(peer),
                "target": {"volume_id": target.volume_id},
            },
            what=what,
        )
        try:
            return ReplicatedVolume(int(out["size"]), int(out["bytes_sent"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"{self._url}: malformed replicate result: {exc}") from exc

    # -- compress ---------------------------------------------------------

    def compression_codecs(self) -> Sequence[str]:
        codecs = self.info().get("codecs")
        if not isinstance(codecs, list):
            raise BackendError(f"{self._url}: malformed info: no codec list")
        return tuple(str(c) for c in codecs)

    # -- leftovers ------------------------------------------------------------

    def sweep_temporary(self, *, dry_run: bool = False) -> list[tuple[str, bool, str]]:
        """Have the target remove ``.incoming`` copies no live write owns (``POST /v1/sweep``).

        Returns ``(where, left_behind, reason)`` for each temporary file on
        the target, `where` being the target's URL and the file's path in its
        directory; left-behind ones are removed unless `dry_run`. Used by
        ``pieceworks recover``. Raises as every call (`TransientError` if the
        target cannot be reached).
        """
        out = self._call("POST", "/v1/sweep", {"dry_run": dry_run}, what="sweep leftovers")
        items = out.get("items")
        if not isinstance(items, list):
            raise BackendError(f"{self._url}: sweep leftovers: bad answer (no items)")
        return [
            (
                f"{self._url}/{item.get('path', '?')}",
                bool(item.get("left_behind")),
                str(item.get("reason", "")),
            )
            for item in items
            if isinstance(item, dict)
        ]

    # -- plain helpers for tests and the demo (not capabilities) -----------

    def info(self) -> dict[str, Any]:
        """What the target reports about itself: api, codecs, store drivers."""
        return self._call("GET", "/v1/info", what="info")

    def create_volume(self, volume_id: str, size: int) -> VolumeRef:
        """Create an empty sparse volume on the target; `BackendError` if it exists."""
        validate_id("volume id", volume_id)
        self._call(
            "POST",
            "/v1/volumes",
            {"volume_id": volume_id, "size": size},
            what=f"create volume {volume_id!r}",
        )
        return VolumeRef(volume_id)

    def write_volume_bytes(self, volume_id: str, data: bytes | bytearray | memoryview) -> VolumeRef:
        """Replace (or create) a volume on the target with exactly `data`.

        This one does send volume bytes over the wire: it is for setting up
        tests and demos, not part of any backup or restore.
        """
        validate_id("volume id", volume_id)
        self._call(
            "PUT",
            f"/v1/volumes/{volume_id}",
            raw=data,
            what=f"write volume {volume_id!r}",
        )
        return VolumeRef(volume_id)

    def volume_sha256(self, volume_id: str) -> str:
        """The sha256 of a volume's content, computed by the target."""
        validate_id("volume id", volume_id)
        out = self._call("GET", f"/v1/volumes/{volume_id}/sha256", what=f"hash {volume_id!r}")
        return str(out["sha256"])

    def list_volumes(self) -> list[VolumeRef]:
        """Every volume on the target, sorted by id."""
        out = self._call("GET", "/v1/volumes", what="list volumes")
        return [VolumeRef(str(v["volume_id"])) for v in out["volumes"]]

    def volume_sizes(self) -> dict[str, int]:
        """Every volume on the target with its size in bytes (one request)."""
        out = self._call("GET", "/v1/volumes", what="list volumes")
        return {str(v["volume_id"]): int(v["size"]) for v in out["volumes"]}

    def list_snapshots(self, volume_id: str) -> list[SnapshotRef]:
        """Every snapshot of a volume on the target, sorted by id."""
        validate_id("volume id", volume_id)
        out = self._call(
            "GET", f"/v1/volumes/{volume_id}/snapshots", what=f"list snapshots of {volume_id!r}"
        )
        return [SnapshotRef(volume_id, str(s)) for s in out["snapshots"]]

    # -- HTTP ---------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        raw: bytes | bytearray | memoryview | None = None,
        what: str,
    ) -> dict[str, Any]:
        """One request on a fresh connection; the answer's JSON object or a mapped error."""
        headers = {"Connection": "close", "Accept": f"application/json, {NDJSON}"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body: bytes | bytearray | memoryview | None = raw
        if payload is not None:
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn = _Connection(self._host, self._port, self._timeout, self._count)
        try:
            conn.request(method, self._base + path, body=body, headers=headers)
            response = conn.getresponse()
            return self._answer(response, what)
        except PieceworksError:
            raise
        except ConnectionRefusedError as exc:
            raise TransientError(
                f"{self._url}: {what}: connection refused (is the target running?)"
            ) from exc
        except TimeoutError as exc:
            raise TransientError(
                f"{self._url}: {what}: no answer within {self._timeout:g} s"
            ) from exc
        except (OSError, http.client.IncompleteRead) as exc:
            raise TransientError(
                f"{self._url}: {what}: connection lost: {type(exc).__name__}: {_reason(exc)}"
            ) from exc
        except http.client.HTTPException as exc:
            raise BackendError(
                f"{self._url}: {what}: bad answer: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            conn.close()

    def _answer(self, response: http.client.HTTPResponse, what: str) -> dict[str, Any]:
        """Read a plain JSON answer, or a progress stream up to its outcome."""
        return read_answer(response, f"{self._url}: {what}", self._progress)

    def _progress(self, done: int, total: int) -> None:
        self.last_progress = (done, total)


def _describe(source: Source) -> str:
    if isinstance(source, SnapshotRef):
        return f"snapshot {source.snapshot_id!r} of volume {source.volume_id!r}"
    return f"volume {source.volume_id!r}"


def _reason(exc: Exception) -> str:
    """An OSError's reason in words (``Connection reset by peer``), never ``[Errno N] ...``."""
    return os_error_text(exc) if isinstance(exc, OSError) else str(exc)
