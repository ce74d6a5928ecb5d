"""The restore and verify halves of the chunk pipeline, and fetching one chunk.

See `pieceworks.common_algorithms.format.chunk_pipeline` for the data path as
a whole (threads, ordering, failure and cancellation).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Final, Literal

from pieceworks.common_algorithms.format.digest_table import DigestTable
from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.common_algorithms.format.pipeline_common import (
    ChunkMissing,
    ChunkProblem,
    Progress,
    RestoreStats,
    VerifyReport,
    _check_args,
    _ordered_map,
    _Reporter,
)
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    ChunkRef,
    CorruptionError,
    IObjectStore,
    ObjectNotFound,
    PieceworksError,
    VolumeWriter,
)
from pieceworks.protocols.chunk_list import ChunkList
from pieceworks.protocols.chunks import (
    chunk_key,
    decode_chunk,
    decode_chunk_view,
)
from pieceworks.protocols.encrypted_store import as_stored, chunk_id_for
from pieceworks.protocols.io import takes_concurrent_writes

__all__ = [
    "QUARANTINE_PREFIX",
    "get_chunk",
    "quarantine_chunk",
    "restore_chunks",
    "verify_chunks",
]

log = logging.getLogger(__name__)


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
    # each distinct digest -> the position of its first chunk, in columns (a dict of the
    # refs took about 300 bytes a chunk); the chunks to fetch are those first ones
    chunks = ChunkList.of(manifest.chunks)
    first = DigestTable()
    distinct_bytes = 0
    for i, length in enumerate(chunks.lengths()):
        digest = chunks.digest_at(i)
        if digest not in first:
            first.put(digest, "", i)
            distinct_bytes += length

    def firsts() -> Iterator[ChunkRef]:
        for i, ref in enumerate(chunks):
            if first.get(chunks.digest_at(i)) == ("", i):
                yield ref

    report = _Reporter(progress, distinct_bytes)
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
        _ordered_map(check, firsts(), threads, depth, cancel, "pieceworks-verify")
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
