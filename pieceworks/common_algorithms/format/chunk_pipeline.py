"""The data path: back up, restore and verify a volume chunk by chunk, pipelined.

A volume is cut into fixed `chunk_size` chunks at offsets ``0, chunk_size,
2 * chunk_size, ...`` (the last may be shorter). Each chunk that is not all
zeros is stored once, as the content-addressed object of
`pieceworks.protocols.chunks`, and listed as a `ChunkRef`; zero chunks and
unallocated ranges are holes that cost nothing.

Backup: the calling thread reads chunks in ascending order (the
`VolumeReader` contract) into a pool of at most `depth` reusable buffers;
`threads` worker threads check for zeros, hash, and store each chunk
(`encode_framed` keeps one compressor per thread). Each buffer keeps
`HEADER_BYTES` of room in front of the chunk it is read into, so that a
chunk stored uncompressed is written from the buffer itself, header
included, without copying it. A chunk holds its buffer until it is hashed
and encoded (and, stored uncompressed, written), so at most `depth` chunks are in flight and
memory stays below about ``(depth + threads) * chunk_size * 2`` whatever the
volume size. A store with ``deferred-sync`` (`IDeferredSync`, the POSIX
store) gets every new chunk with `put_unsynced` and one `sync` of all the
chunks the backup references that it wrote or found in the store, before
`backup_chunks` returns: so the disk writes while the threads work, and the
manifest the caller writes next references durable chunks only. (The
remote target's push, `pieceworks.drivers.remote.transfer.push_volume`, is
this backup too, run next to the volume.) Restore
and verify fetch and check chunks on worker threads, at most `depth` ahead
of the calling thread, which writes (restore) in offset order; a writer
that takes concurrent writes (a file) is written by the workers instead.

All three run entirely in the calling thread's call: when one returns or
raises, no worker touches the store or the volume any more. A failure on
any thread stops the rest and the first exception is re-raised as it was
raised. None of them opens or closes the reader, writer or store: the
caller owns those (a restore's caller commits the writer on success and
aborts it on any exception).
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import Final, Literal, TypeVar

from pieceworks.common_algorithms.format.chunk_ranges import contains, index_ranges, intersect
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    ChunkRef,
    CorruptionError,
    Extent,
    IObjectStore,
    ObjectNotFound,
    OperationCancelled,
    PieceworksError,
    ShortRead,
    UnsupportedCodec,
    VolumeReader,
    VolumeWriter,
    stored_sizes,
)
from pieceworks.protocols.chunks import (
    CODECS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CODEC,
    HEADER_BYTES,
    chunk_key,
    codec_of,
    decode_chunk,
    decode_chunk_view,
    encode_framed,
    is_zero,
)
from pieceworks.protocols.deferred_sync import IDeferredSync
from pieceworks.protocols.encrypted_store import as_stored, chunk_id_for
from pieceworks.protocols.io import takes_concurrent_writes
from pieceworks.protocols.stopping import stop_requested

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BackupResult",
    "BackupStats",
    "QUARANTINE_PREFIX",
    "ChunkMissing",
    "ChunkProblem",
    "OperationCancelled",
    "Progress",
    "RestoreStats",
    "VerifyReport",
    "backup_chunks",
    "get_chunk",
    "quarantine_chunk",
    "restore_chunks",
    "verify_chunks",
]

#: ``progress(bytes_done, bytes_total)``, called from the calling thread, at
#: most about once per 1% of the volume (and once at the end).
Progress = Callable[[int, int], None]

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class ChunkMissing(CorruptionError):
    """A chunk a manifest lists is not in the store (`offset` says where)."""


# -- results ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupStats:
    """What a backup read and wrote.

    ``chunks_total == chunks_new + chunks_reused + holes``. `chunks_reused`
    counts chunks whose object was already stored (by an earlier backup,
    earlier in this one, or taken from the parent without reading);
    `bytes_deduplicated` is their plain size. `bytes_stored` is the size of
    the objects this backup wrote. `chunks_damaged` counts the chunks the
    store should have held (the parent's, or `known`) but that were missing
    or not of their recorded size: they were not reused.
    """

    bytes_total: int
    bytes_read: int
    bytes_stored: int
    bytes_deduplicated: int
    chunks_total: int
    chunks_new: int
    chunks_reused: int
    holes: int
    seconds: float
    chunks_damaged: int = 0

    def as_manifest_stats(self) -> dict[str, int]:
        """The figures as `Manifest.stats` entries (``seconds`` as ``elapsed_ms``)."""
        figures = {k: v for k, v in asdict(self).items() if k != "seconds"}
        figures["elapsed_ms"] = round(self.seconds * 1000)
        return figures


@dataclass(frozen=True, slots=True)
class BackupResult:
    """The chunks of a backup, sorted by offset (gaps are holes), and its figures."""

    chunks: tuple[ChunkRef, ...]
    stats: BackupStats


@dataclass(frozen=True, slots=True)
class RestoreStats:
    """What a restore fetched and wrote (holes are neither fetched nor written)."""

    bytes_total: int
    bytes_written: int
    bytes_fetched: int
    chunks_restored: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ChunkProblem:
    """One chunk of a manifest that cannot be restored, and why."""

    offset: int
    digest: str
    reason: Literal["missing", "corrupt"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of checking every chunk of a manifest.

    `chunks_checked` and `bytes_checked` count the manifest's chunks and
    their plain bytes (a chunk stored once but listed twice is fetched once
    and counted twice); `problems` lists every bad chunk, by offset;
    `quarantined` the keys damaged objects were moved to (if asked to).
    """

    ok: bool
    chunks_checked: int
    bytes_checked: int
    problems: tuple[ChunkProblem, ...]
    quarantined: tuple[str, ...] = ()


# -- backup -------------------------------------------------------------------


def backup_chunks(
    reader: VolumeReader,
    store: IObjectStore,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    codec: str = DEFAULT_CODEC,
    extents: Sequence[Extent] | None = None,
    parent: Manifest | None = None,
    read_only: Sequence[Extent] | None = None,
    reuse: Mapping[int, ChunkRef] | None = None,
    known: Mapping[str, ChunkRef] | None = None,
    threads: int = 2,
    depth: int = 4,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BackupResult:
    """Store every non-zero chunk of `reader` in `store`; return the chunk list.

    Which chunks are read:

    * `extents` (from allocated-extents): only chunks that intersect one are
      considered; every other chunk is a hole and is not read. ``None``:
      all chunks.
    * `read_only` with `parent` (the changed-blocks incremental: the
      changed extents since the parent's change token): only chunks that
      intersect `read_only` are read; every other chunk is the parent's
      chunk at that offset, taken without reading, or a hole if the parent
      had none there. If the parent's chunk size or volume size differs
      from this backup's, `read_only` cannot be trusted and everything
      (within `extents`) is read instead.
    * `read_only` with `reuse`: the same with an explicit offset ->
      `ChunkRef` mapping (`Manifest.chunk_map`); the caller vouches that it
      fits (a chunk of the wrong length or alignment raises `ValueError`).
      Give `parent` or `reuse`, not both.

    How chunks are stored: a chunk whose digest is among the parent's (or
    `reuse`'s) chunks or in `known` (digest -> a `ChunkRef` of an object
    already stored, e.g. `known_chunks` of other manifests) is not sent
    again, provided the store still holds its object at the recorded
    stored size: one batched metadata query (`stored_sizes`) checks them
    all before the first read. One missing, unreadable or of another size
    is not reused: it is read from the source (even outside `read_only`)
    and stored again, so the store heals.
    Any other chunk is fetched from the store and checked: if the object is
    there and intact it is reused (that is how a resumed backup skips what
    it already sent), otherwise it is encoded with `codec` and put. A chunk
    repeated within the volume is stored once, even by racing threads.

    The caller holds a backup lease (`gc.backup_lease`) for the whole
    backup, including while it reads the manifests behind `reuse` and
    `known`, keeps ownership of `reader` (this does not close it), and
    writes the manifest afterwards. On any error (the reader's, the
    store's, a worker's) or cancellation, the remaining work is stopped and
    the first exception is re-raised unchanged (`OperationCancelled` for a
    cancel); objects already put stay in the store, unreferenced, until
    garbage collection.
    """
    _check_args(chunk_size, threads, depth)
    if codec not in CODECS:
        raise UnsupportedCodec(f"unknown codec {codec!r}: choose one of {', '.join(CODECS)}")
    if parent is not None and reuse is not None:
        raise ValueError("give parent or reuse, not both")
    started = time.monotonic()
    size = reader.size
    if parent is not None:
        if parent.chunk_size == chunk_size and parent.size == size:
            reuse = parent.chunk_map()
        else:
            if read_only is not None:
                log.info(
                    "parent %s has another chunk or volume size; reading everything",
                    parent.backup_id,
                )
            read_only = None
            known = {**(known or {}), **{c.digest: c for c in parent.chunks}}
    if read_only is not None and reuse is None:
        raise ValueError("read_only needs parent (or reuse): the chunks of the ranges not read")
    seeds = dict(known or {})
    seeds.update((c.digest, c) for c in (reuse or {}).values())
    damaged = _damaged_seeds(store, seeds)
    if damaged:
        for digest in damaged:
            del seeds[digest]
        if reuse is not None:
            lost = [c for c in reuse.values() if c.digest in damaged]
            reuse = {o: c for o, c in reuse.items() if c.digest not in damaged}
            if read_only is not None:  # read again what can no longer be taken
                read_only = [*read_only, *(Extent(c.offset, c.length) for c in lost)]
    plan = _plan(size, chunk_size, extents, read_only, reuse)
    run = _BackupRun(reader, store, codec, chunk_size, size, seeds, threads, depth, cancel)
    run.damaged = damaged
    chunks = run.run(plan, _Reporter(progress, size))
    return BackupResult(chunks, run.stats(time.monotonic() - started))


class _BackupRun:
    """The state of one `backup_chunks` call, shared by its threads."""

    def __init__(
        self,
        reader: VolumeReader,
        store: IObjectStore,
        codec: str,
        chunk_size: int,
        size: int,
        known: Mapping[str, ChunkRef],
        threads: int,
        depth: int,
        cancel: threading.Event | None,
    ) -> None:
        self.reader, self.store, self.codec = reader, store, codec
        self.chunk_id = chunk_id_for(store)
        self.chunk_size, self.size = chunk_size, size
        self.threads, self.depth, self.cancel = threads, depth, cancel
        self.lock = threading.Lock()
        # digest -> a chunk ref of its stored object: the refs themselves (a tuple per
        # chunk held beside each ref cost 56 bytes a chunk, 14 MiB at 1 TiB)
        self.known: dict[str, ChunkRef] = dict(known)
        self.inflight: dict[str, threading.Event] = {}
        self.abort = threading.Event()
        self.error: BaseException | None = None
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self.buffers = 0
        self.bytes_read = self.bytes_stored = self.bytes_dedup = 0
        self.chunks_new = self.chunks_reused = 0
        # deferred-sync: the digests of the chunks to make durable before returning
        # (written or found here); digests, not keys: the strings the chunk refs hold
        self.deferred: IDeferredSync | None = IDeferredSync(store, None)
        self.unsynced: list[str] = []
        self.damaged: frozenset[str] = frozenset()  # seeds found missing or of the wrong size

    def fail(self, exc: BaseException) -> None:
        """Record the first failure and stop every thread."""
        with self.lock:
            if self.error is None:
                self.error = exc
        self.abort.set()

    def stats(self, seconds: float) -> BackupStats:
        total = -(-self.size // self.chunk_size)
        return BackupStats(
            bytes_total=self.size,
            bytes_read=self.bytes_read,
            bytes_stored=self.bytes_stored,
            bytes_deduplicated=self.bytes_dedup,
            chunks_total=total,
            chunks_new=self.chunks_new,
            chunks_reused=self.chunks_reused,
            holes=total - self.chunks_new - self.chunks_reused,
            seconds=seconds,
            chunks_damaged=len(self.damaged),
        )

    # -- calling thread --

    def run(
        self, plan: Iterator[tuple[int, ChunkRef | None]], report: _Reporter
    ) -> tuple[ChunkRef, ...]:
        pending: deque[tuple[int, Future[ChunkRef | None] | ChunkRef]] = deque()
        chunks: list[ChunkRef] = []
        executor = ThreadPoolExecutor(self.threads, thread_name_prefix="pieceworks-backup")
        try:
            for index, parent_ref in plan:
                if self._stopping():
                    break
                offset = index * self.chunk_size
                if parent_ref is not None:
                    with self.lock:
                        self.chunks_reused += 1
                        self.bytes_dedup += parent_ref.length
                    pending.append((offset, parent_ref))
                    failpoint("incremental.chunk-reused")
                else:
                    length = min(self.chunk_size, self.size - offset)
                    buffer = self._take_buffer()
                    if buffer is None:
                        break
                    if self.abort.is_set():  # a worker failed while we waited
                        self.free.put(buffer)
                        break
                    self._read(buffer, offset, length)
                    future = executor.submit(self._store_chunk, buffer, offset, length)
                    pending.append((offset, future))
                self._drain(pending, chunks, report, block=False)
            if not self._stopping():
                self._drain(pending, chunks, report, block=True)
                if self.deferred is not None and self.unsynced:  # before any manifest
                    self.deferred.sync(map(chunk_key, self.unsynced))
                report(self.size, final=True)
        except BaseException as exc:
            self.fail(exc)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        if self.error is not None:
            raise self.error
        return tuple(chunks)

    def _stopping(self) -> bool:
        if not self.abort.is_set():
            if self.cancel is not None and self.cancel.is_set():
                self.fail(OperationCancelled("backup cancelled"))
            elif stop_requested():  # Ctrl-C or SIGTERM, this running on another thread
                self.fail(OperationCancelled("backup interrupted"))
        return self.abort.is_set()

    def _take_buffer(self) -> bytearray | None:
        """A free buffer (at most `depth` ever exist), or None once stopping."""
        while True:
            try:
                return self.free.get_nowait()
            except queue.Empty:
                pass
            if self.buffers < self.depth:
                self.buffers += 1
                return bytearray(HEADER_BYTES + min(self.chunk_size, self.size))
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                if self._stopping():
                    return None

    def _read(self, buffer: bytearray, offset: int, length: int) -> None:
        try:
            n = self.reader.readinto_at(offset, _plain(buffer, length))
        except BaseException:
            self.free.put(buffer)
            raise
        self.bytes_read += n
        if n != length:
            self.free.put(buffer)
            raise ShortRead(
                f"short read at offset {offset}: got {n} of {length} bytes; the source is"
                f" shorter than its reported size {self.size}"
            )

    def _drain(
        self,
        pending: deque[tuple[int, Future[ChunkRef | None] | ChunkRef]],
        chunks: list[ChunkRef],
        report: _Reporter,
        *,
        block: bool,
    ) -> None:
        """Collect finished chunks in offset order and report progress."""
        while pending:
            offset, item = pending[0]
            if isinstance(item, Future):
                if not block and not item.done():
                    return
                ref = item.result()
            else:
                ref = item
            pending.popleft()
            if ref is not None:
                chunks.append(ref)
            report(min(offset + self.chunk_size, self.size))

    # -- worker threads --

    def _store_chunk(self, buffer: bytearray, offset: int, length: int) -> ChunkRef | None:
        """Hash one chunk and make sure its object is stored; None for a hole."""
        lent: list[bytearray] = [buffer]

        def give_back() -> None:
            if lent:
                self.free.put(lent.pop())

        try:
            if self.abort.is_set():
                return None
            plain = _plain(buffer, length)
            if is_zero(plain):
                return None
            digest = self.chunk_id(plain)
            with self.lock:
                hit = self.known.get(digest)
                wait = self.inflight.get(digest) if hit is None else None
                if hit is None and wait is None:
                    self.inflight[digest] = threading.Event()
            if hit is None and wait is not None:  # another thread is storing it
                give_back()
                wait.wait()
                with self.lock:
                    hit = self.known.get(digest)
                if hit is None:  # that thread failed and stopped the backup
                    return None
            if hit is not None:
                with self.lock:
                    self.chunks_reused += 1
                    self.bytes_dedup += length
                failpoint("incremental.chunk-reused")
                if hit.offset == offset and hit.length == length:  # the parent's own: share it
                    return hit
                return ChunkRef(offset, length, digest, hit.codec, hit.stored_length)
            return self._store_new(buffer, length, digest, offset, give_back)
        except BaseException as exc:
            self.fail(exc)
            raise
        finally:
            give_back()

    def _store_new(
        self,
        buffer: bytearray,
        length: int,
        digest: str,
        offset: int,
        give_back: Callable[[], None],
    ) -> ChunkRef:
        """Store the chunk in `buffer`, which no other thread is storing; publish it in `known`.

        `give_back` returns `buffer` to the pool: as soon as the object no
        longer needs it (at once if the chunk is compressed, after the put if
        the object is the buffer itself).
        """
        key = chunk_key(digest)
        done = False
        try:
            existing = None
            if digest not in self.damaged:  # known bad: replace it without reading it
                existing = _fetch_intact(self.store, key, digest, length, offset)
            if existing is not None:
                give_back()
                codec, stored_length = existing
            else:
                # "none" if compressing does not pay: then `encoded` is a view of `buffer`
                encoded = encode_framed(memoryview(buffer)[: HEADER_BYTES + length], self.codec)
                if not isinstance(encoded, memoryview):
                    give_back()
                if self.deferred is not None:
                    self.deferred.put_unsynced(key, encoded)
                else:
                    self.store.put(key, encoded)
                give_back()
                failpoint("backup.chunk-stored")
                codec, stored_length = codec_of(encoded), len(encoded)
            ref = ChunkRef(offset, length, digest, codec, stored_length)
            done = True
        finally:
            with self.lock:
                if done:
                    self.known[digest] = ref
                    if self.deferred is not None:  # one found intact may be a killed run's
                        self.unsynced.append(digest)
                    if existing is None:
                        self.chunks_new += 1
                        self.bytes_stored += stored_length
                    else:
                        self.chunks_reused += 1
                        self.bytes_dedup += length
                self.inflight.pop(digest).set()
        return ref


def _damaged_seeds(store: IObjectStore, seeds: Mapping[str, ChunkRef]) -> frozenset[str]:
    """Digests of `seeds` whose object is missing, unreadable or not its recorded size.

    One batched metadata query (`stored_sizes`) for them all: a chunk is
    reused only if the store still holds an object of the size a manifest
    recorded for it. (Damage that keeps the size is found by verify, which
    quarantines the object, so that the next backup stores it again.)
    """
    if not seeds:
        return frozenset()
    keys = {chunk_key(d): d for d in seeds}
    sizes = stored_sizes(store, keys)
    damaged = frozenset(d for k, d in keys.items() if sizes.get(k) != seeds[d].stored_length)
    for digest in sorted(damaged):
        key, ref = chunk_key(digest), seeds[digest]
        found = sizes.get(key)
        log.warning(
            "chunk %s (offset %d of an earlier backup) is %s in the store; not reusing it: it is"
            " stored again if this backup still needs it",
            key,
            ref.offset,
            "missing or unreadable" if found is None else f"{found} bytes, not {ref.stored_length}",
        )
    return damaged


def _plain(buffer: bytearray, length: int) -> memoryview:
    """The `length` chunk bytes of `buffer`, after its header room, without a copy."""
    return memoryview(buffer)[HEADER_BYTES : HEADER_BYTES + length]


def _fetch_intact(
    store: IObjectStore, key: str, digest: str, length: int, offset: int
) -> tuple[str, int] | None:
    """(codec, stored length) of an intact stored chunk, or None if absent or damaged."""
    try:
        stored = store.get(key)
    except ObjectNotFound:
        return None
    except CorruptionError as exc:  # an encrypted store's object that fails to unseal
        log.warning("replacing damaged chunk object %s: %s", key, exc)
        return None
    try:
        decode_chunk(stored, digest, length, offset, chunk_id_for(store))
    except CorruptionError as exc:
        log.warning("replacing damaged chunk object %s: %s", key, exc)
        return None
    return codec_of(stored), len(stored)


# -- planning -------------------------------------------------------------------


def _plan(
    size: int,
    chunk_size: int,
    extents: Sequence[Extent] | None,
    read_only: Sequence[Extent] | None,
    reuse: Mapping[int, ChunkRef] | None,
) -> Iterator[tuple[int, ChunkRef | None]]:
    """Yield ``(chunk index, None to read it | the parent's ChunkRef)`` in order.

    Chunks not yielded are holes.
    """
    count = -(-size // chunk_size)
    wanted = [(0, count)] if extents is None else index_ranges(extents, size, chunk_size)
    if read_only is None or reuse is None:
        return ((i, None) for a, b in wanted for i in range(a, b))
    reads = intersect(wanted, index_ranges(read_only, size, chunk_size))
    reused: list[tuple[int, ChunkRef | None]] = []
    for offset, ref in sorted(reuse.items()):
        index = offset // chunk_size
        if index >= count or not contains(wanted, index) or contains(reads, index):
            continue
        expected = min(chunk_size, size - index * chunk_size)
        if offset % chunk_size or ref.offset != offset or ref.length != expected:
            raise ValueError(
                f"parent chunk at offset {offset} (length {ref.length}) does not fit this"
                f" backup's {chunk_size}-byte chunks of a {size}-byte volume; back up without"
                " read_only/reuse"
            )
        reused.append((index, ref))
    to_read = ((i, None) for a, b in reads for i in range(a, b))
    return heapq.merge(to_read, reused, key=lambda item: item[0])


# -- restore and verify ------------------------------------------------------------


def restore_chunks(
    store: IObjectStore,
    manifest: Manifest,
    writer: VolumeWriter,
    *,
    threads: int = 2,
    depth: int = 4,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RestoreStats:
    """Write every chunk of `manifest` into `writer`, checking each one first.

    Workers fetch and decode chunks (`decode_chunk` checks length and
    sha256); the calling thread writes them in offset order with
    `writer.write_at`, or, for a writer that takes concurrent writes
    (`takes_concurrent_writes`: a file written with ``pwrite``), each
    worker writes the chunk it decoded, so that two threads copy into the
    page cache instead of one. Holes are not written (the writer's volume
    reads as zeros there). If a chunk is damaged, `CorruptionError` is
    raised with its offset, its digest and the backup's id (`ChunkMissing`
    if its object is gone) before anything of it is written; chunks before
    it (and with concurrent writes up to `depth` after it) may have been
    written, so the caller must then `abort` the writer (and `commit` it
    only after a normal return). Every write has returned when this
    returns or raises. This function calls neither.
    """
    _check_args(manifest.chunk_size, threads, depth)
    started = time.monotonic()
    report = _Reporter(progress, manifest.size)
    written = fetched = count = 0

    chunk_id = chunk_id_for(store)

    concurrent = takes_concurrent_writes(writer)

    def fetch(ref: ChunkRef) -> tuple[int, bytes | memoryview | None, int]:
        stored = get_chunk(store, ref)
        plain = decode_chunk_view(stored, ref.digest, ref.length, ref.offset, chunk_id)
        if concurrent:  # written here, on this worker (see the docstring)
            writer.write_at(ref.offset, plain)
            return len(stored), None, len(plain)
        return len(stored), plain, len(plain)

    try:
        with closing(
            _ordered_map(fetch, manifest.chunks, threads, depth, cancel, "pieceworks-restore")
        ) as results:
            for ref, (stored_length, plain, length) in results:
                if plain is not None:
                    writer.write_at(ref.offset, plain)
                failpoint("restore.chunk-written")
                written += length
                fetched += stored_length
                count += 1
                report(ref.offset + ref.length)
    except CorruptionError as exc:  # name the backup, as well as the chunk and its offset
        raise type(exc)(f"backup {manifest.backup_id}: {exc}", exc.offset) from None
    report(manifest.size, final=True)
    return RestoreStats(manifest.size, written, fetched, count, time.monotonic() - started)


def verify_chunks(
    store: IObjectStore,
    manifest: Manifest,
    *,
    threads: int = 2,
    depth: int = 4,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    quarantine: bool = False,
) -> VerifyReport:
    """Fetch and check every chunk of `manifest`; report all problems found.

    Each distinct object is fetched and decoded once (length and sha256
    checked). A missing or damaged object is reported for every offset that
    uses it, as a `ChunkProblem` with reason ``"missing"`` or ``"corrupt"``;
    the report is ``ok`` only if there is none. Store failures other than
    a missing object (e.g. `TransientError`) are raised, not reported.
    `progress` counts the plain bytes of distinct objects checked.

    With `quarantine`, each corrupt object is moved aside (`quarantine_chunk`)
    so that its key is free again: the next backup that holds the data
    stores it anew and the store heals. The keys it was moved to are in
    `VerifyReport.quarantined`.
    """
    _check_args(manifest.chunk_size, threads, depth)
    first: dict[str, ChunkRef] = {}
    for ref in manifest.chunks:
        first.setdefault(ref.digest, ref)
    report = _Reporter(progress, sum(r.length for r in first.values()))
    bad: dict[str, tuple[Literal["missing", "corrupt"], str]] = {}
    moved: list[str] = []
    where = f"backup {manifest.backup_id}: "

    chunk_id = chunk_id_for(store)
    # An encrypted store's objects are read as stored and opened here, so that a
    # sealed object that fails to open is reported and moved aside like any other.
    raw_store, open_object = as_stored(store)

    def check(ref: ChunkRef) -> tuple[Literal["missing", "corrupt"], str] | None:
        try:
            raw = get_chunk(raw_store, ref)
        except ChunkMissing as exc:
            return "missing", where + str(exc)
        try:
            stored = open_object(chunk_key(ref.digest), raw)
            decode_chunk(stored, ref.digest, ref.length, ref.offset, chunk_id)
        except CorruptionError as exc:
            detail = where + str(exc)
            if quarantine:
                aside = quarantine_chunk(raw_store, ref.digest, raw)
                if aside is not None:
                    moved.append(aside)
                    detail += f"; moved aside to {aside}"
            return "corrupt", detail
        return None

    done = 0
    with closing(
        _ordered_map(check, list(first.values()), threads, depth, cancel, "pieceworks-verify")
    ) as results:
        for ref, problem in results:
            if problem is not None:
                bad[ref.digest] = problem
            done += ref.length
            report(done)
    report(report.total, final=True)
    problems = tuple(
        ChunkProblem(r.offset, r.digest, bad[r.digest][0], bad[r.digest][1])
        for r in manifest.chunks
        if r.digest in bad
    )
    return VerifyReport(
        not problems, len(manifest.chunks), manifest.data_bytes, problems, tuple(sorted(moved))
    )


#: Where `quarantine_chunk` moves damaged chunk objects.
QUARANTINE_PREFIX: Final = "quarantine/"


def quarantine_chunk(store: IObjectStore, digest: str, damaged: bytes) -> str | None:
    """Move the damaged object of chunk `digest` aside; return its new key, or None.

    The object is copied to ``quarantine/<sha256>.<unix time in ns>``
    and then deleted from ``chunks/``, but only if the store still holds
    exactly the `damaged` bytes (a backup may have stored a good copy
    meanwhile, which is left alone). Nothing is ever lost: the copy is
    written before the original is removed. A store that refuses the
    writes (read-only, say) is logged and None returned.
    """
    key = chunk_key(digest)
    aside = f"{QUARANTINE_PREFIX}{digest}.{time.time_ns()}"
    try:
        try:
            current = store.get(key)
        except ObjectNotFound:
            return None
        if current != damaged:
            return None
        store.put(aside, damaged)
        store.delete(key)
    except PieceworksError as exc:
        log.warning("cannot move damaged chunk %s aside to %s: %s", key, aside, exc)
        return None
    log.warning("moved damaged chunk %s aside to %s", key, aside)
    return aside


def get_chunk(store: IObjectStore, ref: ChunkRef) -> bytes:
    """The stored object of chunk `ref` (not yet checked: `decode_chunk` does that).

    `ChunkMissing` if `store` has no object for it; `CorruptionError` if an
    encrypted store's object fails to open. Both name the chunk's digest and
    offset and carry `ref.offset`. Other store errors are raised as they are.
    """
    key = chunk_key(ref.digest)
    try:
        return store.get(key)
    except ObjectNotFound:
        raise ChunkMissing(
            f"chunk {ref.digest} at offset {ref.offset} is missing from the store (no object"
            f" {key})",
            ref.offset,
        ) from None
    except CorruptionError as exc:  # an encrypted store's object that fails to unseal
        raise CorruptionError(
            f"chunk {ref.digest} at offset {ref.offset}: {exc}", ref.offset
        ) from exc


def _ordered_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    threads: int,
    depth: int,
    cancel: threading.Event | None,
    name: str,
) -> Generator[tuple[T, R], None, None]:
    """Yield ``(item, fn(item))`` in order, computing at most `depth` ahead on `threads`.

    An exception from `fn` is raised when its item's turn comes. Close the
    generator (``contextlib.closing``) so that, however the consumer stops,
    queued work is cancelled and running work is waited for.
    """
    executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
    window: deque[tuple[T, Future[R]]] = deque()
    upcoming = iter(items)
    try:
        while True:
            for item in upcoming:
                window.append((item, executor.submit(fn, item)))
                if len(window) >= depth:
                    break
            if not window:
                return
            if cancel is not None and cancel.is_set():
                raise OperationCancelled(f"{name.removeprefix('pieceworks-')} cancelled")
            if stop_requested():  # Ctrl-C or SIGTERM, this running on another thread
                raise OperationCancelled(f"{name.removeprefix('pieceworks-')} interrupted")
            item, future = window.popleft()
            yield item, future.result()
    finally:
        for _, future in window:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


# -- helpers ---------------------------------------------------------------------


class _Reporter:
    """Calls `progress` when another ~1% is done, and once at the end."""

    __slots__ = ("_next", "_progress", "_step", "total")

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress, self.total = progress, total
        self._step = max(1, total // 100)
        self._next = 0 if progress is not None else 1 << 62

    def __call__(self, done: int, *, final: bool = False) -> None:
        if self._progress is not None and (done >= self._next or final):
            self._next = done + self._step if not final else 1 << 62
            self._progress(done, self.total)


def _check_args(chunk_size: int, threads: int, depth: int) -> None:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, not {chunk_size}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, not {depth}")
