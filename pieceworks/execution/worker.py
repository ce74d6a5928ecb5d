"""Workers next to the data: a backend's data steps served over TaskFlow's worker-based engine.

    serve_backends("amqp://guest:guest@127.0.0.1/", ["lab"], sections, stop=event)

One `taskflow.engines.worker_based.worker.Worker` per backend, on topic
``pieceworks.backend.<name>`` (`topic_of`) of exchange `EXCHANGE`, serves
`STEPS`: the data-moving tasks (a backup's transfer, a restore's write, a
replication's copy, on the worker of its source backend),
built by the worker-based engine from their class and name only. Each opens
the backend and store it is given by NAME from `sections`, this host's own
configuration: no option or secret travels in a message. Several workers
serving one backend share its topic's queue (RabbitMQ hands each request to
one of them). The conductor side is `pieceworks.execution.dispatch`.

A step's arguments and its request's fields are decoded tolerantly
(`placement.RemoteStep.execute`, `operations.requests.decode_request`): what
a newer conductor sends that this version does not know is ignored with a
warning, unless the request requires it (request protocol, docs/scale.md),
when the step is refused with `IncompatibleRequest`; never a TypeError.

The engines' NOTIFY ("who serves this topic?") is answered at once on the
receiving thread, even when every one of the `threads` is busy moving data,
so a conductor never mistakes a busy worker for a missing one.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from taskflow.engines.worker_based import protocol
from taskflow.engines.worker_based.worker import Worker
from taskflow.task import Task

from pieceworks.common_algorithms.operations.backup_tasks import BackupTransfer
from pieceworks.common_algorithms.operations.replicate import ReplicaCopy
from pieceworks.common_algorithms.operations.restore import RestoreWrite
from pieceworks.common_algorithms.placement import HostSections, use_host
from pieceworks.execution.metrics import WorkerMetrics
from pieceworks.protocols import ConfigError, PieceworksError, validate_id

__all__ = ["EXCHANGE", "STEPS", "BrokerUnavailable", "serve_backends", "topic_of"]

log = logging.getLogger(__name__)

#: The AMQP exchange conductors and workers talk on.
EXCHANGE: Final = "pieceworks"
#: The tasks a worker serves (the data-moving steps).
STEPS: Final[tuple[type[Task], ...]] = (BackupTransfer, RestoreWrite, ReplicaCopy)


def topic_of(backend: str) -> str:
    """The topic (and queue) of the workers serving `backend`."""
    return f"pieceworks.backend.{backend}"


class _NotifyInline(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that runs the engines' NOTIFY handling at once, on the caller's thread."""

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        message = args[-1] if args else None
        properties = getattr(message, "properties", None)
        if isinstance(properties, Mapping) and properties.get("type") == protocol.NOTIFY:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as exc:
                future.set_exception(exc)
            return future
        return super().submit(fn, *args, **kwargs)


#: Seconds between checks that every backend's worker still consumes (and of `stop`).
_POLL: Final = 0.2


class BrokerUnavailable(PieceworksError):
    """A worker cannot consume from the broker (unreachable, refused, lost for good)."""

    hint = "check [jobs] transport (or --transport) and that the broker runs"


def _raise_failed(failed: Mapping[str, BaseException], url: str) -> None:
    """`BrokerUnavailable` naming the backends whose worker stopped, if any did."""
    if failed:
        reasons = "; ".join(f"backend {b!r}: {type(e).__name__}: {e}" for b, e in failed.items())
        raise BrokerUnavailable(f"the worker cannot consume from the broker at {url}: {reasons}")


def serve_backends(
    url: str,
    backends: Sequence[str],
    sections: HostSections,
    *,
    stop: threading.Event,
    threads: int = 2,
    metrics: WorkerMetrics | None = None,
    on_ready: Callable[[], None] | None = None,
    mask: Callable[[str], str] | None = None,
    exchange: str = EXCHANGE,
) -> None:
    """Serve the data steps of `backends` over the broker at `url` until `stop` is set.

    `sections` opens this host's backends and stores by name; `threads`
    steps run at once (across all backends). `on_ready` is called once every
    backend's worker consumes its topic. `mask` cleans the text of a failed
    step before it is sent back (else it goes as raised). `exchange` names
    the exchange (conductors must use the same): one per installation, so
    that two of them on one broker never take each other's steps. Raise `ConfigError` for no backend
    or a bad name, `BrokerUnavailable` as soon as a backend's worker stops consuming (the
    broker unreachable at start, or lost for good): it used to die in its thread with a
    traceback while the process went on, serving nothing.
    """
    if not backends:
        raise ConfigError("a worker needs at least one backend to serve (--backends NAME)")
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, not {threads}")
    for name in (*backends, exchange):
        validate_id("backend or exchange name", name)
    use_host(sections, None if metrics is None else metrics.on_step, mask)
    executor = _NotifyInline(max_workers=threads, thread_name_prefix="pieceworks-step")
    workers = [
        Worker(exchange, topic_of(b), list(STEPS), executor=executor, url=url) for b in backends
    ]
    failed: dict[str, BaseException] = {}  # backend -> why its worker stopped consuming

    def consume(w: Worker, backend: str) -> None:
        try:
            w.run(display_banner=False)
        except Exception as exc:  # the broker unreachable, a channel lost for good
            failed[backend] = exc

    runners = [
        threading.Thread(target=consume, args=(w, b), name=f"worker {b}", daemon=True)
        for w, b in zip(workers, backends, strict=True)
    ]
    ready = threading.Event()

    def await_ready() -> None:  # TaskFlow's Worker.wait takes no timeout
        for w in workers:
            w.wait()
        ready.set()

    try:
        for runner in runners:
            runner.start()
        threading.Thread(target=await_ready, name="worker readiness", daemon=True).start()
        while not ready.wait(_POLL):
            if stop.is_set():
                return
            _raise_failed(failed, url)
        log.info("worker serving %s on exchange %s", ", ".join(backends), exchange)
        if on_ready is not None:
            on_ready()
        while not stop.wait(_POLL):
            _raise_failed(failed, url)
    finally:
        for w in workers:
            w.stop()
        for runner in runners:
            runner.join(timeout=5)
        executor.shutdown(wait=True, cancel_futures=True)
        use_host(None)
