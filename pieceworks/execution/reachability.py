"""How a conductor reports a jobboard it cannot reach: once, then a reminder now and then.

A conductor polls its board every `wait_timeout` (half a second by default).
TaskFlow's conductor logs each failed poll with its full traceback (about
fifty lines through redis-py and TaskFlow), so a Redis outage of fifteen
seconds wrote hundreds of lines. `Reachability` turns the failures into
transitions: a warning when the board becomes unreachable (naming it and
the error in words), a reminder at most every `remind_every` seconds while
it stays so, and one line when it answers again. The traceback of the
first failure of an outage goes to the INFO level (``-v``), never more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["REMIND_EVERY", "Reachability", "failure_reason"]

log = logging.getLogger(__name__)

#: Seconds between two reminders that the board is still unreachable.
REMIND_EVERY: Final = 60.0


def failure_reason(exc: BaseException) -> str:
    """`exc` in one line of words, with its direct cause: TaskFlow says only "Failed to connect".

    ``"Failed to connect to redis (Error 111 connecting to 127.0.0.1:6379.
    Connection refused.)"``: the first line of each (TaskFlow's text
    appends its cause's traceback summary on the next lines).
    """
    text = _first_line(exc)
    cause = exc.__cause__
    if cause is not None and _first_line(cause) not in text:
        text += f" ({_first_line(cause)})"
    return text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


class Reachability:
    """The reachability of one board, as seen by `who`, logged as transitions.

    `failed(exc)` after a failed call to the board, `succeeded()` after one
    that worked. Thread-safe (the poll loop and the claim renewer share it).
    `clock` is in seconds (monotonic). `down_since` is the clock's time of
    the outage's first failure, ``None`` while the board answers.
    """

    def __init__(
        self,
        board: str,
        who: str,
        *,
        remind_every: float = REMIND_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = board
        self.who = who
        self.remind_every = remind_every
        self.down_since: float | None = None
        self._clock = clock
        self._reminded = 0.0
        self._failures = 0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        """Record a failed call: a warning if the board was reachable, a reminder if due."""
        now = self._clock()
        with self._lock:
            self._failures += 1
            if self.down_since is None:
                self.down_since = self._reminded = now
                first = True
            elif now - self._reminded >= self.remind_every:
                self._reminded = now
                first = False
            else:
                return
            down_for = now - self.down_since
            failures = self._failures
        reason = failure_reason(exc)
        if first:
            log.warning(
                "%s: the jobboard %s is unreachable: %s; claiming nothing until it answers",
                self.who,
                self.board,
                reason,
            )
            log.info("%s: the first failure to reach %s was:", self.who, self.board, exc_info=exc)
        else:
            log.warning(
                "%s: the jobboard %s is still unreachable after %.0f s (%d failed polls): %s",
                self.who,
                self.board,
                down_for,
                failures,
                reason,
            )

    def succeeded(self) -> None:
        """Record a call that worked: one line if the board was unreachable until now."""
        with self._lock:
            if self.down_since is None:
                return
            down_for = self._clock() - self.down_since
            failures = self._failures
            self.down_since = None
            self._failures = 0
        log.warning(
            "%s: the jobboard %s is reachable again after %.1f s (%d failed polls)",
            self.who,
            self.board,
            down_for,
            failures,
        )
