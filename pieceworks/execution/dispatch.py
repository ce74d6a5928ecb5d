"""The conductor's side of workers: run a data step on a worker of its backend, or say none took it.

    dispatcher = WorkerDispatcher("amqp://guest:guest@127.0.0.1/")
    task.dispatcher = dispatcher     # a conductor does this for each `DataStep`

For each data step `WorkerDispatcher.run` starts TaskFlow's worker-based
executor (`WorkerTaskExecutor`, the engine's own, on the backend's topic),
waits at most `find_timeout` seconds for a worker to answer its notify (the
engine's `ProxyWorkerFinder`), and submits the step: its class, name and
plain arguments (names and values, never a secret). No worker: `NotPlaced`,
and the step runs in the conductor's process (today's behaviour).

A running step sends a heartbeat every second (`placement.HEARTBEAT`); its
progress events are re-emitted on the conductor's task. The worker-based
engine never expires a request once it runs, so the dispatcher does: a step
silent for `lost_after` seconds had its worker die (SIGKILL, host lost).
The step is then submitted again, to another worker if one answers, else
`NotPlaced` runs it in process. Re-running is safe: chunk ids are content
hashes (the same chunks are written again, or found present), and only the
conductor writes the manifest, once, after the step's result.

A worker of another version (a rolling upgrade) that cannot honour the
step's request refuses it (`IncompatibleRequest`: a newer request protocol,
a field it must understand but does not know); so does, with a TypeError,
a worker older than request protocol 1. Either way the dispatcher raises
`IncompatibleRequest` naming the worker's side and emits an
``incompatible`` event; the strategy fallback does not retry it (every
strategy would meet the same worker). The one exception is an argument of
the step's `RemoteStep.OPTIONAL_ARGUMENTS` (it shapes only the answer, such
as a transfer's ``chunk_form``): a worker older than the protocol that
refuses it in its ``execute()`` has done nothing yet, and is asked again
without it (a second ``placed`` event with a ``reason``). See docs/scale.md,
rolling upgrades.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Final

from taskflow import task
from taskflow.engines.worker_based import proxy as wbe_proxy
from taskflow.engines.worker_based.executor import WorkerTaskExecutor
from taskflow.exceptions import RequestTimeout
from taskflow.types.failure import Failure

from pieceworks.common_algorithms.placement import HEARTBEAT, NotPlaced, RemoteStep
from pieceworks.execution.timings import FIND_TIMEOUT, LOST_AFTER, QUEUE_TIMEOUT
from pieceworks.execution.worker import EXCHANGE, topic_of
from pieceworks.protocols import IncompatibleRequest, PieceworksError

__all__ = ["FIND_TIMEOUT", "LOST_AFTER", "QUEUE_TIMEOUT", "RemoteStepFailed", "WorkerDispatcher"]

log = logging.getLogger(__name__)

#: Seconds between the executor's looks at its queue (first notify, expiries).
_POLL: Final = 0.05
# The proxy's drain timeout is also when the finder first publishes its notify:
# TaskFlow's 1 s (settable only for the in-memory transport) would add a second
# to every step. Proxies read it when built (this process: conductors only).
wbe_proxy.DRAIN_EVENTS_PERIOD = _POLL


class RemoteStepFailed(PieceworksError):
    """A data step raised on a worker; the message names the worker's exception."""


class _Lost(Exception):
    """The worker running the step went silent."""


class WorkerDispatcher:
    """Runs `RemoteStep`s on workers over RabbitMQ; a `placement.Dispatcher`.

    `url` is the broker (``amqp://USER:PASS@HOST/``); `find_timeout`
    (seconds) bounds the wait for a worker to answer; `transition_timeout`
    bounds the wait of a submitted step for a worker to start it (then it
    runs in process: a busy worker, or one that died while the step was
    still queued on it); `lost_after` seconds without a heartbeat is a dead worker;
    `attempts` bounds the re-submissions after lost workers. `on_event`
    receives ``placed``, ``lost``, ``in-process`` and ``incompatible`` events (dicts).
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = EXCHANGE,
        find_timeout: float = FIND_TIMEOUT,
        transition_timeout: float = QUEUE_TIMEOUT,
        lost_after: float = LOST_AFTER,
        attempts: int = 3,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.find_timeout = find_timeout
        self.transition_timeout = transition_timeout
        self.lost_after = lost_after
        self.attempts = attempts
        self.on_event = on_event

    def _event(self, **event: Any) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def for_job(self, job_id: str) -> WorkerDispatcher:
        """This dispatcher for the steps of job `job_id`: its events name the job (``job_id``).

        Every other conductor event (``claimed``, ``atom``, ``consumed``...)
        names its job; without it, a ``placed`` or ``lost`` event was told
        from another job's only by its atom name.
        """
        view = copy.copy(self)
        outer = self.on_event
        if outer is not None:
            view.on_event = lambda event: outer({**event, "job_id": job_id})
        return view

    def run(
        self,
        step: type[RemoteStep],
        name: str,
        backend: str,
        arguments: Mapping[str, Any],
        owner: task.Task,
    ) -> Any:
        """The step's result from a worker of `backend`; `NotPlaced` if none took it.

        Raise `RemoteStepFailed` if the step raised on the worker.
        """
        for attempt in range(1, self.attempts + 1):
            executor = WorkerTaskExecutor(
                secrets.token_hex(16),
                self.exchange,
                [topic_of(backend)],
                transition_timeout=self.transition_timeout,
                url=self.url,
            )
            executor.start()
            try:
                if executor.wait_for_workers(1, timeout=self.find_timeout):
                    log.info("no worker of backend %s answered: %s runs in process", backend, name)
                    self._event(event="in-process", atom=name, backend=backend)
                    raise NotPlaced(f"no worker serves backend {backend!r}")
                self._event(event="placed", atom=name, backend=backend, attempt=attempt)
                while True:
                    try:
                        return self._watch(executor, step, name, backend, arguments, owner)
                    except _OptionalRefused as refused:
                        arguments = {k: v for k, v in arguments.items() if k != refused.argument}
                        log.info(
                            "the worker of backend %s predates argument %s of %s: asking it"
                            " again without it",
                            backend,
                            refused.argument,
                            name,
                        )
                        reason = (
                            f"asked again without {refused.argument}, which the worker predates"
                        )
                        self._event(
                            event="placed",
                            atom=name,
                            backend=backend,
                            attempt=attempt,
                            reason=reason,
                        )
            except _Lost:
                log.warning(
                    "the worker running %s went silent for %.1f s (attempt %d): re-running it",
                    name,
                    self.lost_after,
                    attempt,
                )
                self._event(event="lost", atom=name, backend=backend, attempt=attempt)
            finally:
                executor.stop()
        raise NotPlaced(f"workers of backend {backend!r} were lost {self.attempts} times")

    def _watch(
        self,
        executor: WorkerTaskExecutor,
        step: type[RemoteStep],
        name: str,
        backend: str,
        arguments: Mapping[str, Any],
        owner: task.Task,
    ) -> Any:
        local = step(name=name)
        heard: list[float] = []
        progress: list[dict[str, Any]] = []

        def on_event(event_type: str, details: Mapping[str, Any]) -> None:
            # On the executor's message thread: only note it. The owner's
            # progress is persisted by its engine, from the engine's thread.
            heard.append(time.monotonic())
            del heard[:-1]
            if event_type == task.EVENT_UPDATE_PROGRESS:
                progress.append(dict(details))

        local.notifier.register(HEARTBEAT, on_event)
        local.notifier.register(task.EVENT_UPDATE_PROGRESS, on_event)
        future = executor.execute_task(local, secrets.token_hex(16), dict(arguments))
        while True:
            try:
                _event, result = future.result(timeout=0.2)
                break
            except FutureTimeout:
                if progress:
                    owner.notifier.notify(task.EVENT_UPDATE_PROGRESS, progress.pop())
                    progress.clear()
                if heard and time.monotonic() - heard[-1] > self.lost_after:
                    raise _Lost() from None
        if not isinstance(result, Failure):
            return result
        if result.check(RequestTimeout) is not None:
            self._event(event="in-process", atom=name, backend=backend)
            raise NotPlaced(f"no worker of backend {backend!r} took {name} in time")
        kind = next(iter(result), "Exception").rsplit(".", 1)[-1]
        text = result.exception_str if kind == "StepFailed" else f"{kind}: {result.exception_str}"
        if text.startswith("NotServedHere:") or kind == "NotServedHere":
            self._event(event="in-process", atom=name, backend=backend, reason=text)
            raise NotPlaced(f"the worker of backend {backend!r} declined {name}: {text}")
        optional = _optional_refused(text, step, arguments)
        if optional is not None:
            raise _OptionalRefused(optional)
        incompatible = _incompatible(text, backend, name)
        if incompatible is not None:
            log.error("%s", incompatible)
            self._event(event="incompatible", atom=name, backend=backend, reason=text)
            raise IncompatibleRequest(incompatible)
        raise RemoteStepFailed(f"on a worker of backend {backend!r}: {text}")


#: What a worker older than request protocol 1 raises for an argument or a request
#: field it does not know, or lacks: the TypeError of its step's ``execute()`` or of
#: the request's ``__init__`` (any other TypeError is the step's own failure).
_OLD_WORKER = re.compile(
    r"^TypeError: (\w+Request\.__init__|\w+\.execute)\(\) (got an unexpected keyword"
    r" argument|missing \d+ required (positional|keyword-only) argument)"
)


#: The argument such a worker's step refused (the name in the TypeError).
_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


class _OptionalRefused(Exception):
    """A worker older than request protocol 1 refused an optional argument (`RemoteStep`)."""

    def __init__(self, argument: str) -> None:
        super().__init__(argument)
        self.argument = argument


def _optional_refused(
    text: str, step: type[RemoteStep], arguments: Mapping[str, Any]
) -> str | None:
    """The argument of `step.OPTIONAL_ARGUMENTS` an old worker's failure `text` refused, if any.

    Only the step's own ``execute()`` refusing it counts: that TypeError is
    raised before the step does anything, so asking again without the
    argument repeats nothing (see `RemoteStep.OPTIONAL_ARGUMENTS`).
    """
    if not text.startswith(f"TypeError: {step.__name__}.execute() got an unexpected keyword"):
        return None
    found = _UNEXPECTED.search(text)
    if found is None:
        return None
    argument = found.group(1)
    return argument if argument in step.OPTIONAL_ARGUMENTS and argument in arguments else None


def _incompatible(text: str, backend: str, name: str) -> str | None:
    """The conductor's message when a worker's failure `text` says it cannot take the step."""
    if text.startswith("IncompatibleRequest:"):
        return f"the worker of backend {backend!r} refused {name}: {text}"
    if _OLD_WORKER.match(text):
        return (
            f"the worker of backend {backend!r} cannot take {name} ({text}): it predates"
            " request protocol 1 and this request uses what it does not know; upgrade it"
        )
    return None
