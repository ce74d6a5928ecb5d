"""The target's data paths: push, pull, send and receive a volume.

`push_volume` writes a volume (or snapshot) into an object store as
content-addressed chunks and `pull_volume` fills a volume from them, both
through the manager's own data path
(`pieceworks.common_algorithms.format.chunk_pipeline`, which the import
contract lets drivers use);
`send_volume` streams a volume's frames to a peer target and
`receive_volume` reads such a stream into a new copy of a volume (the
frame format is in `pieceworks.drivers.remote.protocol`). Each reports
progress and honours cancellation through a `Job`. None of this knows HTTP
beyond the peer connection of `send_volume` and the request body of
`receive_volume`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from pieceworks.common_algorithms.format.chunk_pipeline import backup_chunks, restore_chunks
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.remote.protocol import (
    API_VERSION,
    FRAME_DATA,
    FRAME_HEADER,
    FRAMES_TYPE,
    MAX_CHUNK,
    MAX_FRAME,
    MIN_CHUNK,
    PIECE,
    Peer,
    read_answer,
)
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    BackendError,
    ChunkRef,
    ConfigError,
    CorruptionError,
    Extent,
    IObjectStore,
    OperationCancelled,
    PieceworksError,
    PushedVolume,
    ReplicatedVolume,
    ShortRead,
    SnapshotRef,
    Source,
    TransientError,
    UnsupportedCodec,
    VolumeRef,
    VolumeWriter,
)
from pieceworks.protocols.chunks import (
    CODECS,
    chunk_key,
    is_zero,
)

log = logging.getLogger(__name__)
_ZERO_PIECE = bytes(PIECE)
_MAX_LINE = 4096  # the longest line of a chunked body's framing
#: The backup id, backend and strategy of the manifest a pull restores (it has none of them).
_PULL = "pull"


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

    def progress(self, done: int, total: int) -> None:
        """Record `done` of `total` bytes (a `chunk_pipeline.Progress`)."""
        self.done, self.total = done, total


def push_volume(
    driver: FileDriver,
    source: Source,
    store: IObjectStore,
    chunk_size: int,
    codec: str,
    *,
    known: Sequence[ChunkRef] = (),
    threads: int = 2,
    depth: int = 4,
    job: Job | None = None,
) -> PushedVolume:
    """Write `source` into `store` as content-addressed chunks (push-to-object-store).

    The manager's data path does it (`backup_chunks` of
    `pieceworks.common_algorithms.format.chunk_pipeline`): chunks outside the
    source's allocated extents are holes and are not read; all-zero chunks
    are holes too. The calling thread reads into at most `depth` reused
    buffers; `threads` workers hash, compress and store (each of those
    releases the GIL). A chunk whose object is already stored and intact is
    not written again: for one among `known` (the manager's list of chunks
    its manifests reference, incremental-offload) the store is asked for
    the objects' sizes, all at once before the first read, and one found
    at its recorded ``stored_length`` is reused unread, while one missing
    or of another size is written again; any other is fetched and checked
    (a killed run's object may be cut short). In a ``deferred-sync`` store (`IDeferredSync`) the
    objects are put without waiting for the disk and one sync makes every
    object the push references durable (those found too, as they may be a
    killed run's, never synced) before this returns. `job` follows the
    progress (bytes of the volume done) and its cancel flag stops the push
    (`OperationCancelled`). On any error the workers stop and the first
    error is raised; objects already written stay, unreferenced, for
    garbage collection.
    """
    check_chunking(chunk_size, codec)
    job = job or Job()
    with closing(driver.open_read(source)) as reader:
        job.total = reader.size
        try:
            done = backup_chunks(
                reader,
                store,
                chunk_size=chunk_size,
                codec=codec,
                extents=driver.allocated_extents(source),
                known={ref.digest: ref for ref in known},
                threads=threads,
                depth=depth,
                progress=job.progress,
                cancel=job.cancelled,
            )
        except OperationCancelled:
            job.check()  # say why: the manager went away
            raise
    stats = done.stats
    job.done = stats.bytes_total
    return PushedVolume(
        stats.bytes_total, done.chunks, stats.bytes_read, stats.bytes_stored, stats.chunks_new
    )


class _IncomingWriter:
    """A pull's writer: the volume's new copy, with the target's failpoint after each write.

    It does not take concurrent writes (no ``concurrent_writes``), so the
    restore pipeline writes in offset order from the calling thread, as the
    target always has.
    """

    def __init__(self, writer: VolumeWriter) -> None:
        self._writer = writer

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        self._writer.write_at(offset, data)
        failpoint("target.incoming-written")

    def commit(self) -> None:
        self._writer.commit()

    def abort(self) -> None:
        self._writer.abort()


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

    The manager's data path does it (`restore_chunks` of
    `pieceworks.common_algorithms.format.chunk_pipeline`): `threads` workers
    fetch and check chunks at most `depth` ahead; the calling thread writes
    them in order into a new copy of the volume, committed only when every
    chunk was checked and written. On any error (a corrupt or missing chunk
    raises `CorruptionError` with its offset) the copy is discarded and
    `target` stays as it was; `job`'s cancel flag (the manager went away)
    stops it the same way (`OperationCancelled`). Return the bytes written.
    """
    check_layout(size, chunks)
    job = job or Job()
    job.total = size
    # restore_chunks restores a manifest: this one holds only what the request gave
    layout = Manifest(
        _PULL, target.volume_id, _PULL, size, MAX_CHUNK, "none", tuple(chunks), 0, _PULL
    )
    writer = _IncomingWriter(driver.open_write(target, size))
    try:
        done = restore_chunks(
            store,
            layout,
            writer,
            threads=threads,
            depth=depth,
            progress=job.progress,
            cancel=job.cancelled,
        )
        job.check()
    except OperationCancelled:
        writer.abort()
        job.check()  # say why: the manager went away
        raise
    except CorruptionError as exc:  # the chunk's own message, as before: there is no backup id
        writer.abort()
        raise type(exc)(str(exc).removeprefix(f"backup {_PULL}: "), exc.offset) from None
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    job.done = size
    return done.bytes_written


def check_chunking(chunk_size: int, codec: str) -> None:
    if codec not in CODECS:
        raise UnsupportedCodec(f"unknown codec {codec!r}: this target produces zstd, zlib, none")
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ConfigError(
            f"chunk size {chunk_size} out of range: use {MIN_CHUNK} to {MAX_CHUNK} bytes"
        )


def check_layout(size: int, chunks: Sequence[ChunkRef]) -> None:
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


def source_sha256(driver: FileDriver, source: Source, job: Job) -> tuple[int, str]:
    """Size and sha256 of `source`; holes are hashed as zeros without being read."""
    h = hashlib.sha256()
    buffer = bytearray(PIECE)
    with closing(driver.open_read(source)) as reader:
        size = reader.size
        job.total = size
        position = 0
        for extent in [*driver.allocated_extents(source), Extent(size, 0)]:
            while position < min(extent.offset, size):  # a hole: zeros
                n = min(PIECE, extent.offset - position)
                h.update(memoryview(_ZERO_PIECE)[:n])
                position += n
            while position < min(extent.end, size):
                job.check()
                n = reader.readinto_at(
                    position, memoryview(buffer)[: min(PIECE, extent.end - position)]
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
                        raise ShortRead(
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
        buffer = memoryview(bytearray(PIECE))
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
        if not line or (len(line) <= _MAX_LINE and not line.endswith(b"\n")):
            raise _gone(None)  # the connection ended, at most in the middle of a line
        if len(line) > _MAX_LINE:
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
            failpoint("target.incoming-written")
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
