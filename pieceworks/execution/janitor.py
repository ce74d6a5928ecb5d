"""A conductor's removal of finished logbooks: periodic, and retried while persistence is away.

A consumed job's logbook is marked with the time its job ended
(`execution.jobs.update_book_meta`, ``finished``) and removed once older
than ``keep_finished`` seconds (`execution.status.remove_finished`). A
conductor used to try at its start and then only after a job it consumed,
at most once a minute: one attempt that failed (the persistence backend out
of reach at that moment) left the logbooks until the next job, or until the
conductor restarted, however long it then ran idle.

Marking a logbook finished can fail too (the database out of reach just
when the job was consumed): such a logbook was never removed, by any
conductor. The janitor keeps the marks that failed (`mark_later`) and
writes them, with the time the job ended, before each removal attempt.

`LogbookJanitor` removes them on a timer of its own (a daemon thread):
every `cleanup_period(keep_finished)` seconds while it works; after a
failure sooner, then less often (`RETRY_FIRST` seconds, doubling up to
`RETRY_MAX`), until an attempt works. It logs transitions, not attempts:
one warning when removal starts failing (the reason, the next try), one
line when it works again (after how many failed attempts); each attempt in
between only at debug level.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from typing import Final

from taskflow.persistence.base import Backend as PersistenceBackend

from pieceworks.execution.jobs import update_book_meta
from pieceworks.execution.status import remove_finished

__all__ = [
    "CLEANUP_EVERY",
    "RETRY_FIRST",
    "RETRY_MAX",
    "LogbookJanitor",
    "cleanup_period",
    "describe_persistence",
]

log = logging.getLogger(__name__)

#: Seconds between two removals of finished logbooks, at most (shorter for a short keep).
CLEANUP_EVERY: Final = 60.0

#: Seconds before the first retry of a removal that failed (or the period, if shorter).
RETRY_FIRST: Final = 5.0

#: Seconds between two retries at most (the delay doubles from `RETRY_FIRST` up to this).
RETRY_MAX: Final = 300.0


def cleanup_period(keep_finished: float) -> float:
    """Seconds between two removals: `CLEANUP_EVERY`, or half of `keep_finished` if shorter
    (at least one second), so that a logbook outlives its keep by at most about half of it."""
    return min(CLEANUP_EVERY, max(keep_finished / 2, 1.0))


def describe_persistence(url: str) -> str:
    """`url` for logs: scheme, host, port and database, never a user or password."""
    parts = urllib.parse.urlsplit(url)
    if not parts.netloc:
        return f"{parts.scheme}://{parts.path}" if parts.scheme else url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class LogbookJanitor:
    """Removes logbooks finished more than `keep_finished` seconds ago, retrying on failure.

    `run_once()` makes one attempt now and returns the seconds until the
    next (the period after a success, the backoff delay after a failure);
    `start()` makes them from a daemon thread until `stop()`. `where` names
    the persistence backend in the log lines (`describe_persistence`).
    `period`, `retry_first` and `retry_max` are seconds (`cleanup_period`,
    `RETRY_FIRST`, `RETRY_MAX` by default). `failures` counts the attempts
    failed in a row (0 while removal works).
    """

    def __init__(
        self,
        persistence: PersistenceBackend,
        keep_finished: float,
        *,
        where: str = "the persistence backend",
        period: float | None = None,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.persistence = persistence
        self.keep_finished = keep_finished
        self.where = where
        self.period = cleanup_period(keep_finished) if period is None else period
        self.retry_first = min(retry_first, self.period)
        self.retry_max = max(retry_max, self.retry_first)
        self.failures = 0
        self._marks: dict[str, float] = {}
        self._marks_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next = self.period

    def mark_later(self, book_uuid: str, finished: float) -> None:
        """Mark logbook `book_uuid` finished at `finished` (Unix time) at the next attempt
        (its mark failed when its job was consumed); kept until written."""
        with self._marks_lock:
            self._marks[book_uuid] = finished

    @property
    def pending_marks(self) -> int:
        """How many logbooks wait to be marked finished."""
        with self._marks_lock:
            return len(self._marks)

    def _write_marks(self) -> None:
        with self._marks_lock:
            marks = dict(self._marks)
        for book_uuid, finished in marks.items():
            update_book_meta(self.persistence, book_uuid, finished=finished)
            with self._marks_lock:
                self._marks.pop(book_uuid, None)
            log.info("marked the logbook %s finished (its mark had failed)", book_uuid)

    def run_once(self) -> float:
        """One attempt now (pending marks, then removal); the seconds until the next one.
        Never raises."""
        try:
            self._write_marks()
            removed = remove_finished(self.persistence, self.keep_finished)
        except Exception as exc:
            self.failures += 1
            delay = min(self.retry_first * 2.0 ** (self.failures - 1), self.retry_max)
            if self.failures == 1:
                log.warning(
                    "cannot remove finished logbooks from %s: %s: %s; trying again in %g s,"
                    " then less often (up to every %g s) until it works",
                    self.where,
                    type(exc).__name__,
                    _first_line(exc),
                    delay,
                    self.retry_max,
                )
            log.debug(
                "removal of finished logbooks failed (%d in a row); next try in %g s",
                self.failures,
                delay,
                exc_info=True,
            )
            return delay
        if self.failures:
            log.info(
                "finished logbooks removed from %s again (%d removed) after %d failed attempt%s",
                self.where,
                removed,
                self.failures,
                "" if self.failures == 1 else "s",
            )
            self.failures = 0
        return self.period

    def start(self) -> None:
        """Attempt from a daemon thread: `run_once` now, then after each delay it returns."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="pieceworks-logbook-janitor", daemon=True
        )
        self._thread.start()

    def start_after_first(self) -> None:
        """`run_once` in this thread (at a conductor's start), then `start` for the rest."""
        self._next = self.run_once()
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (an attempt under way finishes, within `timeout` seconds)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def _run(self) -> None:
        delay = self._next
        while not self._stopping.wait(delay):
            delay = self.run_once()


def _first_line(exc: BaseException) -> str:
    """The first line of `exc`'s text (a database driver's message runs on with SQL)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
