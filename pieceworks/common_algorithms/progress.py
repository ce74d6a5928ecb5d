"""Progress of long tasks, reported through TaskFlow's task notifier.

A data-path task calls its `ProgressReporter` with bytes done; at most every
`interval` seconds (and at the end) the reporter emits TaskFlow's
``update_progress`` event with the fraction and the byte counts. The engine
stores it with the atom (so it is persisted); a CLI or a manager listens on
the task's notifier (see `runner.ProgressEvent`). Rate limiting matters: with
SQL persistence each event is a database commit.
"""

from __future__ import annotations

import time

from taskflow import task

__all__ = ["ProgressReporter"]


class ProgressReporter:
    """Throttle byte progress of `owner` into TaskFlow progress events."""

    def __init__(self, owner: task.Task, total: int, interval: float = 0.5) -> None:
        self._owner = owner
        self._interval = interval
        self._last = 0.0
        self.total = total

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        now = time.monotonic()
        finished = done >= self.total
        if not finished and now - self._last < self._interval:
            return
        self._last = now
        fraction = 1.0 if self.total <= 0 else min(1.0, done / self.total)
        self._owner.notifier.notify(
            task.EVENT_UPDATE_PROGRESS,
            {"progress": fraction, "bytes_done": done, "bytes_total": self.total},
        )
