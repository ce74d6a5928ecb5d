"""The backup half of the chunk pipeline: read, hash, deduplicate, encode and store.

See `pieceworks.common_algorithms.format.chunk_pipeline` for the data path as
a whole (threads, buffers, deferred sync, failure and cancellation).
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from pieceworks.common_algorithms.format.chunk_ranges import contains, index_ranges, intersect
from pieceworks.common_algorithms.format.digest_table import DigestTable
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.common_algorithms.format.pipeline_common import (
    BackupResult,
    BackupStats,
    Progress,
    _check_args,
    _Reporter,
)
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    ChunkRef,
    CorruptionError,
    Extent,
    IObjectStore,
    ObjectNotFound,
    OperationCancelled,
    ShortRead,
    UnsupportedCodec,
    VolumeReader,
    stored_sizes,
)
from pieceworks.protocols.chunk_list import (
    ChunkList,
    ChunkListBuilder,
    ChunksByOffset,
    digest_bytes,
)
from pieceworks.protocols.chunks import (
    CODECS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CODEC,
    HEADER_BYTES,
    chunk_key,
    codec_of,
    decode_chunk,
    encode_framed,
    is_zero,
)
from pieceworks.protocols.deferred_sync import IDeferredSync
from pieceworks.protocols.encrypted_store import chunk_id_for
from pieceworks.protocols.stopping import stop_requested

__all__ = [
    "backup_chunks",
    "unstored_chunks",
]

log = logging.getLogger(__name__)


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
    known: Mapping[str, ChunkRef] | Sequence[ChunkRef] | None = None,
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
    already stored, e.g. `known_chunks` of other manifests; or a sequence of
    such refs, such as a manifest's `ChunkList`, read from its columns
    without a dict) is not sent again, provided the store still holds its object at the recorded
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
    parent_chunks: ChunkList | None = None
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
            parent_chunks = parent.chunk_list
    if read_only is not None and reuse is None:
        raise ValueError("read_only needs parent (or reuse): the chunks of the ranges not read")
    # later sources win for a digest listed twice: known, the parent's, reuse's
    sources = [s for s in (known, parent_chunks, reuse) if s is not None]
    damaged = _damaged_seeds(store, sources)
    seeds = DigestTable()
    for source in sources:  # a ChunkList is indexed in place; other seeds are copied
        listed = source.chunk_list if isinstance(source, ChunksByOffset) else source
        if isinstance(listed, ChunkList):
            seeds.add_list(listed, damaged)
            continue
        for digest, seed_codec, stored_length, _ in _seeds([source]):
            if digest.hex() not in damaged:
                seeds.put(digest, seed_codec, stored_length)
    if damaged and reuse is not None:
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
        known: DigestTable,
        threads: int,
        depth: int,
        cancel: threading.Event | None,
    ) -> None:
        self.reader, self.store, self.codec = reader, store, codec
        self.chunk_id = chunk_id_for(store)
        self.chunk_size, self.size = chunk_size, size
        self.threads, self.depth, self.cancel = threads, depth, cancel
        self.lock = threading.Lock()
        # digest -> (codec, stored length) of its stored object, in columns: a dict of
        # hex digests to chunk refs cost about 300 bytes a chunk, 80 MiB at 1 TiB
        self.known = known
        # deferred-sync: every entry put after these (a chunk written or found here) is
        # made durable before returning: `self.known.hex_digests(self.seeded)`
        self.seeded = self.known.own
        self.inflight: dict[str, threading.Event] = {}
        self.abort = threading.Event()
        self.error: BaseException | None = None
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self.buffers = 0
        self.bytes_read = self.bytes_stored = self.bytes_dedup = 0
        self.chunks_new = self.chunks_reused = 0
        self.deferred: IDeferredSync | None = IDeferredSync(store, None)
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

    def run(self, plan: Iterator[tuple[int, ChunkRef | None]], report: _Reporter) -> ChunkList:
        pending: deque[tuple[int, Future[ChunkRef | None] | ChunkRef]] = deque()
        chunks = ChunkListBuilder()
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
                if self.deferred is not None and self.known.own > self.seeded:
                    # before any manifest references them
                    self.deferred.sync(map(chunk_key, self.known.hex_digests(self.seeded)))
                report(self.size, final=True)
        except BaseException as exc:
            self.fail(exc)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        if self.error is not None:
            raise self.error
        return chunks.build()

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
        chunks: ChunkListBuilder,
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
            binary = bytes.fromhex(digest)
            with self.lock:
                hit = self.known.get(binary)
                wait = self.inflight.get(digest) if hit is None else None
                if hit is None and wait is None:
                    self.inflight[digest] = threading.Event()
            if hit is None and wait is not None:  # another thread is storing it
                give_back()
                wait.wait()
                with self.lock:
                    hit = self.known.get(binary)
                if hit is None:  # that thread failed and stopped the backup
                    return None
            if hit is not None:
                with self.lock:
                    self.chunks_reused += 1
                    self.bytes_dedup += length
                failpoint("incremental.chunk-reused")
                return ChunkRef(offset, length, digest, *hit)
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
                    # synced at the end if deferred: one found intact may be a killed run's
                    self.known.put(bytes.fromhex(digest), codec, stored_length)
                    if existing is None:
                        self.chunks_new += 1
                        self.bytes_stored += stored_length
                    else:
                        self.chunks_reused += 1
                        self.bytes_dedup += length
                self.inflight.pop(digest).set()
        return ref


#: Chunks whose stored size `unstored_chunks` asks the store for at a time: about 3 MB of
#: keys and sizes, and few calls (a store may list a prefix per call: swift_store).
_SIZES_AT_ONCE = 16384

#: Where a backup takes the chunks it may reuse from: a mapping of hex digest to a
#: chunk ref, or of offset to one (``reuse``), or a sequence of chunk refs.
_SeedSource = Mapping[str, ChunkRef] | Mapping[int, ChunkRef] | Sequence[ChunkRef]


def _seeds(sources: Sequence[_SeedSource]) -> Iterator[tuple[bytes, str, int, int]]:
    """``(32-byte digest, codec, stored length, offset)`` of each chunk of `sources`.

    A `ChunkList` (or `ChunksByOffset` over one) is read from its columns: no
    dict, no `ChunkRef` per chunk. A mapping of hex digests is read by its
    keys; any other mapping or sequence by its refs' digests.
    """
    for given in sources:
        source = given.chunk_list if isinstance(given, ChunksByOffset) else given
        if isinstance(source, ChunkList):
            yield from source.objects()
        elif isinstance(source, Mapping):
            for key, ref in source.items():
                digest = key if isinstance(key, str) else ref.digest
                yield digest_bytes(digest, ref.offset), ref.codec, ref.stored_length, ref.offset
        else:
            for ref in source:
                yield digest_bytes(ref.digest, ref.offset), ref.codec, ref.stored_length, ref.offset


def unstored_chunks(
    store: IObjectStore, sources: Sequence[_SeedSource]
) -> Iterator[tuple[str, int, int, int | None]]:
    """``(hex digest, offset, recorded stored length, size found or None)`` of each chunk
    of `sources` that the store does not hold at its recorded size.

    Batched metadata queries (`stored_sizes`, `_SIZES_AT_ONCE` keys each, so
    that the keys and sizes held do not grow with the volume). A digest is
    named once, at its first chunk found wanting.
    """
    named: set[str] = set()
    batch: list[tuple[str, int, int]] = []

    def check() -> Iterator[tuple[str, int, int, int | None]]:
        sizes = stored_sizes(store, [chunk_key(digest) for digest, _, _ in batch])
        for digest, stored_length, offset in batch:
            found = sizes.get(chunk_key(digest))
            if found != stored_length and digest not in named:
                named.add(digest)
                yield digest, offset, stored_length, found
        batch.clear()

    for digest, _, stored_length, offset in _seeds(sources):
        batch.append((digest.hex(), stored_length, offset))
        if len(batch) >= _SIZES_AT_ONCE:
            yield from check()
    if batch:
        yield from check()


def _damaged_seeds(store: IObjectStore, sources: Sequence[_SeedSource]) -> frozenset[str]:
    """Hex digests of the seeds whose object is missing, unreadable or not its recorded size.

    A chunk is reused only if the store still holds an object of the size a
    manifest recorded for it (`unstored_chunks`). (Damage that keeps the
    size is found by verify, which quarantines the object, so that the next
    backup stores it again.)
    """
    damaged: set[str] = set()
    for digest, offset, stored_length, found in unstored_chunks(store, sources):
        damaged.add(digest)
        log.warning(
            "chunk %s (offset %d of an earlier backup) is %s in the store; not reusing"
            " it: it is stored again if this backup still needs it",
            chunk_key(digest),
            offset,
            "missing or unreadable" if found is None else f"{found} bytes, not {stored_length}",
        )
    return frozenset(damaged)


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

    def reused() -> Iterator[tuple[int, ChunkRef | None]]:
        """The parent's chunks to take, in order, one at a time (a list of them all held
        a tuple and a ChunkRef per chunk of the volume)."""
        assert reuse is not None
        ordered = reuse.items() if isinstance(reuse, ChunksByOffset) else sorted(reuse.items())
        for offset, ref in ordered:
            index = offset // chunk_size
            if index >= count or not contains(wanted, index) or contains(reads, index):
                continue
            expected = min(chunk_size, size - index * chunk_size)
            if offset % chunk_size or ref.offset != offset or ref.length != expected:
                raise ValueError(
                    f"parent chunk at offset {offset} (length {ref.length}) does not fit this"
                    f" backup's {chunk_size}-byte chunks of a {size}-byte volume; back up"
                    " without read_only/reuse"
                )
            yield index, ref

    to_read = ((i, None) for a, b in reads for i in range(a, b))
    return heapq.merge(to_read, reused(), key=lambda item: item[0])
