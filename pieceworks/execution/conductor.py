"""Conductors: claim jobs from a jobboard and run their flows with shared persistence.

A conductor (`taskflow.conductors`, the blocking kind) claims one job at a
time, rebuilds its flow from the factory persisted in the job's flow detail
and runs it on an engine loaded from that flow detail, which skips the atoms
the persistence already holds as done. On top of TaskFlow's conductor:

* Routing: a job names its backends and stores; a conductor claims only jobs
  whose names its host configures (and, with `serve`, only those backends)
  and whose drivers are installed here. Any other job is left on the board
  for a conductor that can run it, never trashed.
* Names, not secrets: the flow factory gets `resolve`, the host's own
  configuration, to turn a backend or store name into driver and options.
* Claims: the engine writes through `GuardedPersistence`, which checks
  before every write (before each atom starts, with each result, with the
  final state) that this conductor still holds the claim, and stops the run
  otherwise; a result reported by the new owner is never overwritten.
* Workers: with a `dispatcher` (``--transport amqp://...``), each data step
  (`placement.DataStep`: a backup's transfer, a restore's write) runs on a
  worker serving its backend when one answers (`execution.dispatch`), else
  here; planning, leases and the manifest always run here.
* A job whose flow cannot even be built (an unknown volume, a bad request)
  is consumed with its flow detail in state ``FAILURE`` and the reason in
  ``meta["error"]``, so its poster learns why, by job id.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import signal
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Final

from taskflow import engines, states
from taskflow.conductors.backends.impl_blocking import BlockingConductor
from taskflow.engines.base import Engine
from taskflow.exceptions import UnclaimableJob
from taskflow.jobs import backends as jobs_backends
from taskflow.jobs.base import Job, JobBoard
from taskflow.persistence.base import Backend as PersistenceBackend

from pieceworks.common_algorithms.jobs import Resolver
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.common_algorithms.placement import DataStep, Dispatcher
from pieceworks.common_algorithms.runner import iter_tasks, open_persistence
from pieceworks.execution.board import (
    DEFAULT_CLAIM_EXPIRY,
    JobboardConf,
    LeasedRedisJobBoard,
    claim_owner,
    describe_board,
    jobboard_conf,
)
from pieceworks.execution.guard import ClaimLost, GuardedPersistence, Masker
from pieceworks.execution.janitor import LogbookJanitor, describe_persistence
from pieceworks.execution.jobs import cancel_requested, update_book_meta
from pieceworks.execution.liveness import ConductorNameInUse, NameRegistration
from pieceworks.execution.metrics import ConductorMetrics
from pieceworks.execution.reachability import REMIND_EVERY, Reachability
from pieceworks.failpoints import failpoint
from pieceworks.protocols import ConfigError, PieceworksError
from pieceworks.registry.discovery import DRIVERS_NAMESPACE, STORES_NAMESPACE, load_factory

__all__ = ["ENGINES", "EVENTS_COMMAND", "EventSink", "Routing", "event_writer", "run_conductor"]

log = logging.getLogger(__name__)

#: Engines a conductor can run jobs on.
ENGINES: Final = ("serial", "parallel")

#: Receives conductor events (claimed, atom, consumed, ...) as JSON-able dicts.
EventSink = Callable[[dict[str, Any]], None]

#: The "command" of the events' deprecated field names in `json_fields`.
EVENTS_COMMAND: Final = "conductor --events"


def event_writer(stream: IO[str]) -> EventSink:
    """An `EventSink` writing each event as one JSON line (with ``time``, Unix time) to `stream`.

    Each line also carries the deprecated names of its renamed fields
    (``job``, ``who``, ``t``, ``why``: `json_fields.DEPRECATED_FIELDS`,
    command ``conductor --events``). Thread-safe; each line is flushed at
    once, so that a reader (``--events FILE``) sees events as they happen.
    """
    lock = threading.Lock()

    def write(event: dict[str, Any]) -> None:
        doc = with_deprecated(EVENTS_COMMAND, {**event, "time": time.time()})
        line = json.dumps(doc, sort_keys=True)
        with lock:
            stream.write(line + "\n")
            stream.flush()

    return write


class Routing:
    """Which jobs this conductor can run: those whose backends and stores it has.

    `resolve` is the host's configuration (name → ``{"name", "driver",
    "options"}``, `ConfigError` for an unknown name); `serve`, if given,
    narrows the backends to these names. `why_not(job)` is ``None`` for a
    job this conductor can run, else the reason (for the log).
    """

    def __init__(self, resolve: Resolver | None, serve: Sequence[str] | None = None) -> None:
        self.resolve = resolve
        self.serve = frozenset(serve) if serve is not None else None

    def why_not(self, job: Job) -> str | None:
        details = job.details or {}
        for kind, namespace, key in (
            ("backend", DRIVERS_NAMESPACE, "backends"),
            ("store", STORES_NAMESPACE, "stores"),
        ):
            for name in details.get(key, ()):
                reason = self._check(kind, namespace, str(name))
                if reason is not None:
                    return reason
        return None

    def _check(self, kind: str, namespace: str, name: str) -> str | None:
        if kind == "backend" and self.serve is not None and name not in self.serve:
            return f"backend {name!r} is not one this conductor serves"
        if self.resolve is None:
            return f"{kind} {name!r}: this conductor has no configuration"
        try:
            driver = str(self.resolve(kind, name)["driver"])
        except PieceworksError as exc:
            return str(exc)
        try:
            load_factory(driver, namespace)
        except PieceworksError as exc:
            return f"{kind} {name!r} needs driver {driver!r}: {exc}"
        return None


class _NotBuilt(PieceworksError):
    """The job's flow could not be built; its flow detail records why."""


class PieceworksConductor(BlockingConductor):
    """TaskFlow's blocking conductor with routing, name resolution and claim checks.

    See the module docstring. `mask` cleans the failure texts written to
    the persistence backend.
    """

    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: PersistenceBackend,
        *,
        engine: str,
        wait_timeout: float,
        resolve: Resolver | None,
        mask: Masker | None,
        on_lost: Callable[[Job], None] | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        super().__init__(
            name, jobboard, persistence=persistence, engine=engine, wait_timeout=wait_timeout
        )
        self._resolve = resolve
        self._mask = mask
        self._guards: dict[str, GuardedPersistence] = {}
        self._on_lost = on_lost
        self._dispatcher = dispatcher

    def _engine_from_job(self, job: Job) -> Engine:
        flow_detail = self._flow_detail_from_job(job)
        what = f"job {job.uuid} ({job.name})"
        board, me = self._jobboard, self._name
        persistence = self._persistence
        guarded = GuardedPersistence(
            persistence,
            (lambda: board.holds(job, me))
            if isinstance(board, LeasedRedisJobBoard)
            else (lambda: board.find_owner(job) == me),
            what=what,
            mask=self._mask,
            cancelled=lambda: cancel_requested(persistence, flow_detail.uuid),
            # A Redis board out of reach is asked again while the claim may still be ours.
            patience=board.claim_expiry if isinstance(board, LeasedRedisJobBoard) else 0.0,
        )
        self._guards[job.uuid] = guarded
        try:
            flow = self._build_flow(flow_detail.meta or {})
        except Exception as exc:
            text = f"{what} cannot start: {type(exc).__name__}: {exc}"
            if self._mask is not None:
                text = self._mask(text)
            log.error("%s", text)
            flow_detail.meta = {**(flow_detail.meta or {}), "error": text}
            flow_detail.state = states.FAILURE
            with contextlib.closing(guarded.get_connection()) as conn:
                conn.update_flow_details(flow_detail)
            raise _NotBuilt(text) from exc
        guarded.guard_tasks(iter_tasks(flow))
        if self._dispatcher is not None:
            dispatcher = self._dispatcher
            for_job = getattr(dispatcher, "for_job", None)  # a WorkerDispatcher's
            if callable(for_job):
                dispatcher = for_job(job.uuid)
            for node in iter_tasks(flow):
                if isinstance(node, DataStep):
                    node.dispatcher = dispatcher
        store: dict[str, Any] = {}
        store.update((flow_detail.meta or {}).get("store", {}))
        store.update((job.details or {}).get("store", {}))
        return engines.load(
            flow,
            store=store,
            flow_detail=flow_detail,
            backend=guarded,
            engine=self._engine,
            **self._engine_options,
        )

    def _build_flow(self, meta: Mapping[str, Any]) -> Any:
        factory = meta.get("factory")
        if not isinstance(factory, Mapping) or "name" not in factory:
            raise ConfigError("the job's flow detail names no flow factory")
        module_name, _, attr = str(factory["name"]).rpartition(".")
        function = getattr(importlib.import_module(module_name), attr)
        kwargs = dict(factory.get("kwargs") or {})
        return function(*factory.get("args", ()), **kwargs, resolve=self._resolve)

    def _dispatch_job(self, job: Job) -> bool:
        """Run `job`; True: consume it, False: give it up (abandon)."""
        try:
            consume = super()._dispatch_job(job)
        except _NotBuilt:
            return True
        except ClaimLost:
            consume, lost = False, True
        else:
            lost = False
        finally:
            guard = self._guards.pop(job.uuid, None)
        if lost or (guard is not None and guard.lost):
            log.error("%s: lost the claim on job %s; giving it up", self._name, job.uuid)
            if self._on_lost is not None:
                self._on_lost(job)
            return False
        return consume


def _conductor_board(
    name: str,
    conf: Mapping[str, Any],
    persistence: PersistenceBackend,
    events: EventSink | None,
    routing: Routing,
    metrics: ConductorMetrics | None,
    remind_every: float = REMIND_EVERY,
) -> JobBoard:
    if conf.get("board", "redis") != "redis":
        # ZooKeeper/etcd claims are tied to the session: they die with it already.
        return jobs_backends.fetch(name, dict(conf), persistence=persistence)

    def on_claim(job: Job, who: str) -> None:
        log.info("%s claimed job %s (%s)", who, job.uuid, job.name)
        if metrics is not None:
            metrics.on_claim(job.uuid)
        if events is not None:
            events({"event": "claimed", "job_id": job.uuid, "conductor": name, "owner": who})

    def can_claim(job: Job) -> None:
        reason = routing.why_not(job)
        if reason is not None:
            log.debug("%s leaves job %s (%s): %s", name, job.uuid, job.name, reason)
            raise UnclaimableJob(f"job {job.uuid} left for another conductor: {reason}")

    client_conf = {k: v for k, v in conf.items() if k not in ("board", "claim_expiry")}
    expiry = float(conf.get("claim_expiry", DEFAULT_CLAIM_EXPIRY))
    return LeasedRedisJobBoard(
        name,
        client_conf,
        persistence,
        claim_expiry=expiry,
        on_claim=on_claim,
        before_claim=can_claim,
        on_listing=None if metrics is None else metrics.waiting.set,
        reachability=Reachability(describe_board(conf), name, remind_every=remind_every),
    )


def run_conductor(
    name: str,
    jobboard: JobboardConf,
    persistence_url: str,
    *,
    max_dispatches: int | None = None,
    engine: str = "serial",
    wait_timeout: float = 0.5,
    events: EventSink | None = None,
    stop_on_signals: Sequence[signal.Signals] = (),
    resolve: Resolver | None = None,
    serve: Sequence[str] | None = None,
    mask: Masker | None = None,
    keep_finished: float | None = None,
    metrics: ConductorMetrics | None = None,
    dispatcher: Dispatcher | None = None,
    remind_every: float = REMIND_EVERY,
) -> int:
    """Run a conductor until stopped; return the jobs it finished (consumed or given up).

    The conductor claims one job at a time among those it can run (see
    `Routing`: names `resolve` knows, backends in `serve` if given),
    rebuilds its flow from the persisted factory, runs it on `engine`
    (atoms already done are not run again) and consumes the job. It stops
    after `max_dispatches` jobs if given (0: at once, before claiming any).
    `stop_on_signals` (main thread only) stop it gracefully: the running
    flow is suspended after its current atom and the job abandoned, so
    another conductor resumes it at once. `events` receives ``claimed``, ``atom``, ``consumed``,
    ``abandoned``, ``trashed`` and ``lost`` (the claim, to another
    conductor: nothing more was run or written) events; `mask` cleans failure texts
    before they are persisted. A consumed job's logbook is marked finished;
    with `keep_finished` (seconds), logbooks finished longer ago are removed
    at start and then periodically, an attempt that fails (the persistence
    backend out of reach) retried with backoff (`execution.janitor`). `metrics` (if given) counts
    claims, outcomes, durations, bytes moved and the unclaimed jobs.
    `dispatcher` (an `execution.dispatch.WorkerDispatcher`) runs the data
    steps on workers next to the data when one serves the backend.
    While the (Redis) board cannot be reached, the conductor keeps polling
    and logs one warning, a reminder every `remind_every` seconds and one
    line when it answers again (`execution.reachability`).
    Claims go by `claim_owner(name)`, unique to this process: two live
    conductors started with one `name` never take each other's claims (nor
    run one job at once), and one restarted under its old name resumes its
    killed predecessor's job once that claim expires (`execution.board`).
    On a Redis board the conductor registers `name` (`execution.liveness`):
    raise `ConductorNameInUse` (a `ConfigError`) at start if a live
    conductor holds it, and after stopping if one took it while this one
    was stalled. Raise `ConfigError` for an unknown `engine` or a negative `max_dispatches`
    (before connecting to anything).
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if max_dispatches is not None and max_dispatches < 0:
        raise ConfigError(f"max_dispatches must be 0 or more, not {max_dispatches}")
    board_conf = jobboard_conf(jobboard)
    routing = Routing(resolve, serve)
    owner = claim_owner(name)
    with open_persistence(persistence_url) as persistence:
        board = _conductor_board(
            name, board_conf, persistence, events, routing, metrics, remind_every
        )
        janitor = None
        if keep_finished is not None:
            where = describe_persistence(persistence_url)
            janitor = LogbookJanitor(persistence, keep_finished, where=where)
        book = _Bookkeeper(name, persistence, events, max_dispatches, metrics, janitor)
        conductor = PieceworksConductor(
            owner,
            board,
            persistence,
            engine=engine,
            wait_timeout=wait_timeout,
            resolve=resolve,
            mask=mask,
            on_lost=lambda job: book.on_done("job_lost", {"job": job}),
            dispatcher=dispatcher,
        )
        book.conductor = conductor
        conductor.notifier.register("running_start", book.on_running)
        for event in ("job_consumed", "job_abandoned", "job_trashed"):
            conductor.notifier.register(event, book.on_done)

        def on_signal(signum: int, _frame: types.FrameType | None) -> None:
            log.info("%s: signal %d, stopping after the current atom", name, signum)
            conductor.stop()

        for sig in stop_on_signals:
            signal.signal(sig, on_signal)
        log.info(
            "conductor %s on %s (engine %s); claims as %r",
            name,
            describe_board(board_conf),
            engine,
            owner,
        )
        conductor.connect()
        registration = None
        try:
            if isinstance(board, LeasedRedisJobBoard):
                registration = NameRegistration(
                    board, name, owner, board.claim_expiry, on_lost=lambda _text: conductor.stop()
                )
                registration.acquire()
            if janitor is not None:
                janitor.start_after_first()
            try:
                if max_dispatches is None or max_dispatches > 0:
                    conductor.run()
            finally:
                if janitor is not None:
                    janitor.stop()
        finally:
            if registration is not None:
                registration.release()
            conductor.close()
    if registration is not None and registration.lost is not None:
        raise ConductorNameInUse(registration.lost)
    return book.finished


class _Bookkeeper:
    """A conductor's listener: events, finished logbooks marked, the dispatch limit."""

    def __init__(
        self,
        name: str,
        persistence: PersistenceBackend,
        events: EventSink | None,
        max_dispatches: int | None,
        metrics: ConductorMetrics | None = None,
        janitor: LogbookJanitor | None = None,
    ) -> None:
        self.name = name
        self.janitor = janitor
        self.metrics = metrics
        self.persistence = persistence
        self.events = events
        self.max_dispatches = max_dispatches
        self.conductor: PieceworksConductor | None = None
        self.finished = 0

    def on_running(self, _event: str, details: dict[str, Any]) -> None:
        job: Job = details["job"]
        events = self.events

        def on_atom(state: str, details: dict[str, Any]) -> None:
            atom = details.get("task_name") or details.get("retry_name")
            if events is not None:
                events({"event": "atom", "job_id": job.uuid, "atom": atom, "state": state})

        details["engine"].atom_notifier.register("*", on_atom)

    def _result(self, job: Job) -> dict[str, Any] | None:
        """The persisted result of consumed `job` if its flow succeeded, else None."""
        flow_uuid = (job.details or {}).get("flow_uuid")
        result_atom = (job.details or {}).get("result_atom")
        if not flow_uuid or not result_atom:
            return None
        try:
            with contextlib.closing(self.persistence.get_connection()) as conn:
                detail = conn.get_flow_details(str(flow_uuid))
        except Exception:
            log.warning("cannot read the outcome of job %s", job.uuid, exc_info=True)
            return None
        if detail.state != states.SUCCESS:
            return None
        for atom in detail:
            if atom.name == result_atom and isinstance(atom.results, dict):
                return dict(atom.results)
        return None

    def on_done(self, event: str, details: dict[str, Any]) -> None:
        self.finished += 1
        kind = event.removeprefix("job_")
        job: Job = details["job"]
        log.info("%s %s job %s (%s)", self.name, kind, job.uuid, job.name)
        if kind == "consumed" and job.book_uuid is not None:
            failpoint("job.consumed")
            ended = time.time()
            try:
                update_book_meta(self.persistence, job.book_uuid, finished=ended)
            except Exception as exc:
                later = "; marked later" if self.janitor is not None else ""
                log.warning("could not mark job %s finished: %s%s", job.uuid, exc, later)
                log.debug("the mark failed with", exc_info=True)
                if self.janitor is not None:
                    self.janitor.mark_later(job.book_uuid, ended)
        if self.metrics is not None:
            result = self._result(job) if kind == "consumed" else None
            self.metrics.on_finish(job.uuid, kind, result)
        if self.events is not None:
            self.events({"event": kind, "job_id": job.uuid, "conductor": self.name})
        if self.max_dispatches is not None and self.finished >= self.max_dispatches:
            assert self.conductor is not None
            self.conductor.stop()
