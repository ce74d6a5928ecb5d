"""Conductors: claim jobs from a jobboard and run their flows with shared persistence.

A conductor (`taskflow.conductors`, the blocking kind) claims one job at a
time, rebuilds its flow from the factory persisted in the job's flow detail
and runs ``engines.load_from_detail``, which skips the atoms the persistence
already holds as done. On a Redis board the claims are made by
`LeasedRedisJobBoard`, so they die with the conductor.
"""

from __future__ import annotations

import logging
import signal
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from taskflow.conductors import backends as conductor_backends
from taskflow.jobs import backends as jobs_backends
from taskflow.jobs.base import Job, JobBoard
from taskflow.persistence.base import Backend as PersistenceBackend

from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution.board import (
    DEFAULT_CLAIM_EXPIRY,
    JobboardConf,
    LeasedRedisJobBoard,
    describe_board,
    jobboard_conf,
)
from pieceworks.protocols import PieceworksError

__all__ = ["ENGINES", "EventSink", "run_conductor"]

log = logging.getLogger(__name__)

#: Engines a conductor can run jobs on.
ENGINES: Final = ("serial", "parallel")

#: Receives conductor events (claimed, atom, consumed, ...) as JSON-able dicts.
EventSink = Callable[[dict[str, Any]], None]


def _conductor_board(
    name: str,
    conf: Mapping[str, Any],
    persistence: PersistenceBackend,
    events: EventSink | None,
) -> JobBoard:
    if conf.get("board", "redis") != "redis":
        # ZooKeeper/etcd claims are tied to the session: they die with it already.
        return jobs_backends.fetch(name, dict(conf), persistence=persistence)

    def on_claim(job: Job, who: str) -> None:
        log.info("%s claimed job %s (%s)", who, job.uuid, job.name)
        if events is not None:
            events({"event": "claimed", "job": job.uuid, "who": who})

    client_conf = {k: v for k, v in conf.items() if k not in ("board", "claim_expiry")}
    expiry = float(conf.get("claim_expiry", DEFAULT_CLAIM_EXPIRY))
    return LeasedRedisJobBoard(
        name, client_conf, persistence, claim_expiry=expiry, on_claim=on_claim
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
) -> int:
    """Run a blocking TaskFlow conductor until stopped; return the jobs it finished.

    The conductor claims one job at a time, rebuilds its flow from the
    persisted factory, runs it with ``engines.load_from_detail`` on
    `engine` (atoms already done are not run again) and consumes the job.
    It stops after `max_dispatches` jobs (consumed, abandoned or trashed)
    if given. `stop_on_signals` (main thread only) stop it gracefully: the
    running flow is suspended after its current atom and the job abandoned,
    so another conductor resumes it at once. `events` receives ``claimed``,
    ``atom``, ``consumed``, ``abandoned`` and ``trashed`` events.
    """
    if engine not in ENGINES:
        raise PieceworksError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    board_conf = jobboard_conf(jobboard)
    finished = 0
    with open_persistence(persistence_url) as persistence:
        board = _conductor_board(name, board_conf, persistence, events)
        conductor = conductor_backends.fetch(
            "blocking",
            name,
            board,
            persistence=persistence,
            engine=engine,
            wait_timeout=wait_timeout,
        )

        def on_running(_event: str, details: dict[str, Any]) -> None:
            job: Job = details["job"]

            def on_atom(state: str, details: dict[str, Any]) -> None:
                atom = details.get("task_name") or details.get("retry_name")
                if events is not None:
                    events({"event": "atom", "job": job.uuid, "atom": atom, "state": state})

            details["engine"].atom_notifier.register("*", on_atom)

        def on_done(event: str, details: dict[str, Any]) -> None:
            nonlocal finished
            finished += 1
            kind = event.removeprefix("job_")
            job: Job = details["job"]
            log.info("%s %s job %s (%s)", name, kind, job.uuid, job.name)
            if events is not None:
                events({"event": kind, "job": job.uuid, "who": name})
            if max_dispatches is not None and finished >= max_dispatches:
                conductor.stop()

        conductor.notifier.register("running_start", on_running)
        for event in ("job_consumed", "job_abandoned", "job_trashed"):
            conductor.notifier.register(event, on_done)

        def on_signal(signum: int, _frame: types.FrameType | None) -> None:
            log.info("%s: signal %d, stopping after the current atom", name, signum)
            conductor.stop()

        for sig in stop_on_signals:
            signal.signal(sig, on_signal)
        log.info("conductor %s on %s (engine %s)", name, describe_board(board_conf), engine)
        conductor.connect()
        try:
            if max_dispatches is None or max_dispatches > 0:
                conductor.run()
        finally:
            conductor.close()
    return finished
