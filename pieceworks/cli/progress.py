"""Progress of long work on stderr, fed by the common algorithms' `ProgressEvent`.

Three modes, chosen by `mode_for`:

``bar``
    stderr is a terminal: one line redrawn in place (``\\r``) with a bar,
    percentage, bytes done and total, MB/s and time left.
``lines``
    stderr is a file or pipe: a plain line at most once per `interval`
    seconds, and one at the end.
``off``
    ``--quiet``: nothing.

Events come through TaskFlow's task notifier, possibly from worker threads;
the display is thread-safe. Events without a byte total (TaskFlow's own
"task started/finished" reports) are ignored.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from pieceworks.cli.output import human_bytes

if TYPE_CHECKING:  # the runner imports TaskFlow: not needed to draw a bar
    from pieceworks.common_algorithms.runner import ProgressEvent

__all__ = ["Progress", "format_eta", "mode_for"]

_BAR = 24


def _columns(stream: TextIO) -> int:
    """The width of the terminal `stream` writes to (``COLUMNS`` wins; 100 if unknown)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(stream.fileno()).columns or 100
    except (AttributeError, OSError, ValueError):
        return 100


def mode_for(stream: TextIO, quiet: bool) -> str:
    """``off`` when quiet, ``bar`` on a terminal, else ``lines``."""
    if quiet:
        return "off"
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):
        return "lines"


def format_eta(seconds: float | None) -> str:
    """``0:07`` / ``1:02:03`` for a time left; ``--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    total = int(seconds + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """A progress display for one operation; call it with each `ProgressEvent`.

    Use it as a context manager so the bar's line is finished (or erased)
    at the end, whatever happens.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        mode: str,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream
        self.mode = mode
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._task: str | None = None
        self._started = 0.0
        self._base = 0
        self._printed = -1
        self._last_line = float("-inf")
        self._drawn = False
        self._last: ProgressEvent | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, event: ProgressEvent) -> None:
        if self.mode == "off" or event.bytes_total <= 0:
            return
        with self._lock:
            now = self._clock()
            if event.task != self._task or (
                self._last and event.bytes_done < self._last.bytes_done
            ):
                # A new task, or a strategy started over: measure the rate afresh.
                self._task, self._started, self._base = event.task, now, event.bytes_done
                self._printed = -1
            self._last = event
            if self.mode == "bar":
                self._draw(self._line(event, now, bar=True))
            elif event.bytes_done == self._printed:
                return  # the same figures again (a task's final report comes twice)
            elif now - self._last_line >= self.interval or event.bytes_done >= event.bytes_total:
                self._last_line, self._printed = now, event.bytes_done
                self.stream.write(self._line(event, now, bar=False) + "\n")
                self.stream.flush()

    def close(self) -> None:
        """End the bar's line so what follows starts on a fresh one."""
        with self._lock:
            if self.mode == "bar" and self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False

    def _draw(self, line: str) -> None:
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def _line(self, event: ProgressEvent, now: float, *, bar: bool) -> str:
        done, total = event.bytes_done, event.bytes_total
        fraction = min(1.0, done / total)
        elapsed = now - self._started
        rate = (done - self._base) / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        if done >= total:
            eta = 0.0
        figures = (
            f"{fraction * 100:5.1f}%  {human_bytes(done)} / {human_bytes(total)}"
            f"  {rate / 1e6:7.1f} MB/s  ETA {format_eta(eta)}"
        )
        if not bar:
            return f"pieceworks: {self.label}: {figures}"
        # The bar takes what the terminal leaves (at most _BAR); the figures always show.
        columns = _columns(self.stream)
        room = min(_BAR, columns - 1 - len(self.label) - len(figures) - 4)
        if room < 5:
            return f"{self.label} {figures}"[: max(columns - 1, 20)]
        filled = int(fraction * room)
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}] {figures}"
