"""What the chunk pipeline's backup, restore and verify share: results and helpers.

The data path itself is described in `pieceworks.common_algorithms.format.chunk_pipeline`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal, TypeVar

from pieceworks.protocols import (
    CorruptionError,
    OperationCancelled,
)
from pieceworks.protocols.chunk_list import ChunkList
from pieceworks.protocols.stopping import stop_requested

__all__ = [
    "BackupResult",
    "BackupStats",
    "ChunkMissing",
    "ChunkProblem",
    "Progress",
    "RestoreStats",
    "VerifyReport",
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

    chunks: ChunkList
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


def _ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
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
