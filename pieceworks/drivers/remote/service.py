"""What a remote target does, independent of HTTP: `TargetService`.

Each public method of `TargetService` is one API action (see the table in
`pieceworks.drivers.remote.protocol`): it takes the request's path
parameters, its JSON body (a mapping) and, for long operations, a `Job`,
and returns the JSON answer as a dict. `pieceworks.drivers.remote.http`
routes requests to them.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from typing import Any

from pieceworks.drivers import _files
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.remote.protocol import (
    API_VERSION,
    FIRST_WAIT_SECONDS,
    HEARTBEAT_SECONDS,
    PIECE,
    TARGET_CODECS,
    keys_from_json,
    known_from_json,
    peer_from_json,
    pushed_to_json,
    spec_from_json,
)
from pieceworks.drivers.remote.transfer import (
    Job,
    check_chunking,
    check_layout,
    pull_volume,
    push_volume,
    send_volume,
    source_sha256,
)
from pieceworks.drivers.store_opener import known_store_drivers, open_store
from pieceworks.protocols import (
    BackendError,
    ConfigError,
    InvalidName,
    NotFound,
    SnapshotRef,
    Source,
    VolumeNotFound,
    VolumeRef,
    validate_id,
)
from pieceworks.protocols.chunks import (
    is_zero,
)
from pieceworks.protocols.encrypted_store import EncryptedStore
from pieceworks.protocols.encryption import StoreKeys
from pieceworks.protocols.object_store import IObjectStore
from pieceworks.protocols.values import StoreSpec, chunks_from_json

log = logging.getLogger(__name__)


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
        self._writing: dict[str, int] = {}  # volume id -> writes (and snapshots) under way
        self._writing_lock = threading.Lock()
        for path, left, reason in self.sweep_leftovers():
            if left:
                log.info("removed %s, left by an earlier run: %s", path, reason)

    # -- leftovers --

    @contextmanager
    def writing(self, volume_id: str) -> Iterator[None]:
        """Mark `volume_id` as being written (or snapshotted) by this target inside the block."""
        self.begin_write(volume_id)
        try:
            yield
        finally:
            self.end_write(volume_id)

    def begin_write(self, volume_id: str) -> None:
        """Count a write of `volume_id` under way (before its ``.incoming`` file exists)."""
        with self._writing_lock:
            self._writing[volume_id] = self._writing.get(volume_id, 0) + 1

    def end_write(self, volume_id: str) -> None:
        """The write `begin_write` counted is over (its temporary file is gone)."""
        with self._writing_lock:
            left = self._writing.get(volume_id, 0) - 1
            if left > 0:
                self._writing[volume_id] = left
            else:
                self._writing.pop(volume_id, None)

    def sweep_leftovers(self, *, dry_run: bool = False) -> list[tuple[str, bool, str]]:
        """Remove ``.incoming`` copies and snapshot temporaries that no live write owns.

        A file of a dead process (the name records host, pid and start time)
        is left behind, and so is one of this target's own process whose
        volume it no longer writes (an operation that ended without cleaning
        up); one of a live process that still writes it is kept. Returns
        ``(path relative to the directory, left_behind, reason)`` for each;
        left-behind ones are removed unless `dry_run`.
        """
        root = self.driver.root
        found = _files.sweep_volume_root(root, dry_run=True)
        out: list[tuple[str, bool, str]] = []
        with self._writing_lock:  # a write begins before its file exists and ends after
            for path, dead, why in found:
                left, reason = self._judge(path, dead, why)
                if left and not dry_run:
                    _files.unlink_if_exists(path)
                out.append((os.path.relpath(path, root), left, reason))
        return out

    def _judge(self, path: str, dead: bool, why: str) -> tuple[bool, str]:
        """Whether the temporary file `path` is left behind, and why (hold the lock)."""
        name = os.path.basename(path)
        if dead or not _files.written_by_me(name):
            return dead, why
        parent = os.path.basename(os.path.dirname(path))
        volume = parent if name.startswith(".tmp-") else _files.tagged_volume(name)
        me = f"this target (pid {os.getpid()})"
        if volume in self._writing:
            return False, f"{me} is writing volume {volume!r}"
        return True, f"{me} no longer writes volume {volume!r}"

    def sweep(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """sweep: remove (unless ``dry_run``) the leftovers no live write owns; list each."""
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ValueError("dry_run: expected true or false")
        items = self.sweep_leftovers(dry_run=dry_run)
        return {
            "dry_run": dry_run,
            "items": [{"path": p, "left_behind": left, "reason": r} for p, left, r in items],
        }

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
        with self.writing(volume_id):
            return self._write_volume(volume_id, read, length)

    def _write_volume(
        self, volume_id: str, read: Callable[[int], bytes], length: int
    ) -> dict[str, Any]:
        self.sweep_leftovers()
        writer = self.driver.open_write(VolumeRef(volume_id), length)
        written = position = 0
        try:
            while position < length:
                piece = read(min(PIECE, length - position))
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
        size, digest = source_sha256(self.driver, VolumeRef(volume_id), job)
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
        with self.writing(volume_id):
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
        check_chunking(chunk_size, codec)
        known = known_from_json(body.get("known"))
        started = time.monotonic()
        store = _opened(spec, keys_from_json(body.get("keys")))
        pushed = push_volume(
            self.driver,
            source,
            store,
            chunk_size,
            codec,
            known=known,
            threads=self.threads,
            job=job,
        )
        log.info(
            "push %s -> store %r (%s, %s): %d chunks (%d known), %d bytes read, %d written, %.2f s",
            source,
            spec.name,
            spec.driver,
            codec,
            len(pushed.chunks),
            len(known),
            pushed.bytes_read,
            pushed.bytes_written,
            time.monotonic() - started,
        )
        return {**pushed_to_json(pushed), "chunks_known": len(known)}

    def pull(self, body: Mapping[str, Any], job: Job) -> dict[str, Any]:
        """pull-from-object-store: fill a volume from chunks in a store."""
        target = body.get("target")
        if not isinstance(target, dict):
            raise ValueError("target: expected {volume_id}")
        ref = VolumeRef(str(target.get("volume_id", "")))
        spec = spec_from_json(body.get("store"))
        size, chunks = _int(body, "size"), chunks_from_json(body.get("chunks"))
        check_layout(size, chunks)
        started = time.monotonic()
        # A pull reads only: a store that is not there (a path the manager sees and this
        # host does not) is StoreMissing, never created empty here to fail chunk by chunk.
        store = _opened(spec, keys_from_json(body.get("keys")), create=False)
        with self.writing(ref.volume_id):
            self.sweep_leftovers()
            written = pull_volume(
                self.driver, ref, size, store, chunks, threads=self.threads, job=job
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


def _is_id(name: str) -> bool:
    try:
        validate_id("id", name)
    except InvalidName:
        return False
    return True


# -- HTTP --------------------------------------------------------------------------


def _opened(spec: StoreSpec, keys: StoreKeys | None, *, create: bool = True) -> IObjectStore:
    """The store `spec` names, sealed with `keys` when the manager sent them (sealed-offload).

    With `create` false a store that does not exist is `StoreMissing` (`open_store`).
    """
    store = open_store(spec, create=create)
    return store if keys is None else EncryptedStore(store, keys)
