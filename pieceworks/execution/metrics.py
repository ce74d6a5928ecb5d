"""Prometheus metrics of a conductor (prometheus_client), served on ``--metrics-port``.

=====================================  =========  =============================================
metric                                 type       what
=====================================  =========  =============================================
``pieceworks_jobs_claimed_total``      counter    jobs this conductor claimed
``pieceworks_jobs_finished_total``     counter    jobs it finished, by ``outcome``: ``consumed``,
                                                  ``abandoned``, ``trashed``, ``lost``
``pieceworks_jobs_failed_total``       counter    consumed jobs whose flow did not succeed
``pieceworks_job_seconds``             histogram  seconds from claim to finish, by ``outcome``
``pieceworks_bytes_moved_total``       counter    bytes read and stored by succeeded jobs, by
                                                  ``direction`` (``read``, ``stored``)
``pieceworks_jobs_waiting``            gauge      unclaimed jobs on the board at the last look
=====================================  =========  =============================================

A worker (``pieceworks worker --metrics-port``, `WorkerMetrics`) has:

=====================================  =========  =============================================
``pieceworks_worker_steps_total``      counter    data steps run on this worker, by ``step``
``pieceworks_worker_failed_total``     counter    those that raised, by ``step``
``pieceworks_worker_bytes_total``      counter    bytes they moved, by ``direction`` (``read``,
                                                  ``stored`` for backups, ``written`` restores)
=====================================  =========  =============================================

Each conductor (and worker) process has its own registry (`ConductorMetrics.registry`),
so tests and embedders can run several in one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["ConductorMetrics", "WorkerMetrics"]

#: Job durations are minutes to hours: buckets in seconds.
_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class ConductorMetrics:
    """The metrics of one conductor; `serve(port)` exposes them over HTTP (``/metrics``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.claimed = Counter(
            "pieceworks_jobs_claimed", "Jobs claimed by this conductor", registry=self.registry
        )
        self.finished = Counter(
            "pieceworks_jobs_finished",
            "Jobs this conductor finished, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.failed = Counter(
            "pieceworks_jobs_failed",
            "Consumed jobs whose flow did not succeed",
            registry=self.registry,
        )
        self.seconds = Histogram(
            "pieceworks_job_seconds",
            "Seconds from claim to finish",
            ["outcome"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.bytes_moved = Counter(
            "pieceworks_bytes_moved",
            "Bytes read and stored by succeeded jobs",
            ["direction"],
            registry=self.registry,
        )
        self.waiting = Gauge(
            "pieceworks_jobs_waiting",
            "Unclaimed jobs on the board at the last look",
            registry=self.registry,
        )
        self._claimed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on `addr`:`port` (0: a free port) from a daemon thread; the port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)

    def on_claim(self, job_uuid: str) -> None:
        with self._lock:
            self._claimed_at[job_uuid] = time.monotonic()
        self.claimed.inc()

    def on_finish(self, job_uuid: str, outcome: str, result: dict[str, Any] | None) -> None:
        """Count a finished job; `result` is its flow's result if it succeeded (else None)."""
        with self._lock:
            started = self._claimed_at.pop(job_uuid, None)
        self.finished.labels(outcome).inc()
        if started is not None:
            self.seconds.labels(outcome).observe(time.monotonic() - started)
        if outcome != "consumed":
            return
        if result is None:
            self.failed.inc()
            return
        for direction in ("read", "stored"):
            value = result.get(f"bytes_{direction}")
            if isinstance(value, int) and value > 0:
                self.bytes_moved.labels(direction).inc(value)


class WorkerMetrics:
    """The metrics of one worker; `on_step` is its `placement.Observer`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.steps = Counter(
            "pieceworks_worker_steps",
            "Data steps run on this worker",
            ["step"],
            registry=self.registry,
        )
        self.failed = Counter(
            "pieceworks_worker_failed",
            "Data steps that raised on this worker",
            ["step"],
            registry=self.registry,
        )
        self.bytes_moved = Counter(
            "pieceworks_worker_bytes",
            "Bytes moved by this worker's data steps",
            ["direction"],
            registry=self.registry,
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on `addr`:`port` (0: a free port) from a daemon thread; the port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)

    def on_step(
        self, step: str, result: Mapping[str, Any] | None, error: BaseException | None
    ) -> None:
        """Count a step that ended: its bytes if it returned `result`, a failure if `error`."""
        self.steps.labels(step).inc()
        if error is not None or result is None:
            self.failed.labels(step).inc()
            return
        for direction in ("read", "stored", "written"):
            value = result.get(f"bytes_{direction}")
            if isinstance(value, int) and value > 0:
                self.bytes_moved.labels(direction).inc(value)
