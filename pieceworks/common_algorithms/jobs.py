"""Backups at scale: jobs on a TaskFlow jobboard, run by conductors on any host.

A manager posts a job; any number of conductor processes (on any hosts)
claim jobs, rebuild the flow by name and run it with its state persisted in
a shared TaskFlow persistence backend (PostgreSQL)::

    job = post_backup(
        "redis://10.0.0.5:6379/pieceworks",
        "postgresql://pw@10.0.0.6/pieceworks",
        backend={"name": "lab", "driver": "file", "options": {"path": "/srv/volumes"}},
        store={"name": "lab", "driver": "posix", "options": {"path": "/srv/backups"}},
        request={"volume_id": "vol-1"},
    )
    result = wait_for("redis://10.0.0.5:6379/pieceworks", "postgresql://...", job)

    # on every worker host:
    python -m pieceworks.common_algorithms.jobs conductor \\
        --jobboard redis://10.0.0.5:6379/pieceworks --persistence postgresql://...

Everything here is TaskFlow: `save_factory_details` records how to rebuild
the flow (``backup_job_flow`` and its JSON-able arguments) in the flow
detail; the jobboard carries only the logbook's id; a conductor
(`taskflow.conductors`) claims the job and runs ``engines.load_from_detail``,
which skips the atoms the persistence already holds as done.

A dead conductor must let go of its jobs. TaskFlow's Redis board claims
without expiry by default (the owner key lives forever) and its conductors
call ``claim(job, who)`` without one, so a conductor killed mid-job would
hold its job forever. `LeasedRedisJobBoard` claims with an expiry
(``claim_expiry`` seconds, default 30) and renews every claim it holds from
a background thread; when the process dies, renewals stop, the owner key
expires, and another conductor claims the job and resumes it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import socket
import sys
import threading
import time
import types
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, Final, cast

from taskflow import engines
from taskflow.conductors import backends as conductor_backends
from taskflow.flow import Flow
from taskflow.jobs import backends as jobs_backends
from taskflow.jobs.backends.impl_redis import RedisJob, RedisJobBoard
from taskflow.jobs.base import Job, JobBoard
from taskflow.persistence import backends as persistence_backends
from taskflow.persistence import models
from taskflow.persistence.base import Backend as PersistenceBackend

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.backup import backup_flow
from pieceworks.common_algorithms.requests import BackupRequest, RestoreRequest
from pieceworks.common_algorithms.restore import restore_flow
from pieceworks.protocols import BackendSpec, IObjectStore, PieceworksError, StoreSpec
from pieceworks.registry.discovery import DRIVERS_NAMESPACE, STORES_NAMESPACE, load_factory

__all__ = [
    "DEFAULT_CLAIM_EXPIRY",
    "ENGINES",
    "JobFailed",
    "LeasedRedisJobBoard",
    "PostedJob",
    "atom_states",
    "backup_job_flow",
    "destroy_job_book",
    "jobboard_conf",
    "main",
    "post_backup",
    "post_restore",
    "restore_job_flow",
    "run_conductor",
    "wait_for",
]


#: Seconds a claim outlives its conductor (renewed every third of it).
DEFAULT_CLAIM_EXPIRY: Final = 30.0
#: Engines a conductor can run jobs on.
ENGINES: Final = ("serial", "parallel")
#: Where the flow factories live, by name (``__name__`` is ``__main__`` under ``-m``).
_MODULE: Final = "pieceworks.common_algorithms.jobs"
LOG = logging.getLogger(_MODULE)

#: A jobboard configuration: ``redis://host:port/namespace[?claim_expiry=S]``
#: or TaskFlow's dict form (``{"board": "redis", "host": ..., ...}``).
JobboardConf = Mapping[str, Any] | str
#: Receives conductor events (claimed, atom, consumed, ...) as JSON-able dicts.
EventSink = Callable[[dict[str, Any]], None]


class JobFailed(PieceworksError):
    """A job ended without success (its flow failed or was reverted)."""


# -- flow factories: what conductors re-import by name ------------------------


def _spec_options(options: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in options.items()}


def _backend(conf: Mapping[str, Any]) -> Backend:
    name, driver, options = str(conf["name"]), str(conf["driver"]), dict(conf.get("options", {}))
    factory = load_factory(driver, DRIVERS_NAMESPACE)
    spec = BackendSpec(name, driver, _spec_options(options))
    return Backend.of(name, factory(**options), spec)


def _store(conf: Mapping[str, Any]) -> Store:
    name, driver, options = str(conf["name"]), str(conf["driver"]), dict(conf.get("options", {}))
    objects = cast(IObjectStore, load_factory(driver, STORES_NAMESPACE)(**options))
    return Store(name, objects, StoreSpec(name, driver, _spec_options(options)))


def _backup_request(request: Mapping[str, Any]) -> BackupRequest:
    fields = dict(request)
    if "strategies" in fields:
        fields["strategies"] = tuple(fields["strategies"])
    return BackupRequest(**fields)


def _restore_request(request: Mapping[str, Any]) -> RestoreRequest:
    fields = dict(request)
    if "strategies" in fields:
        fields["strategies"] = tuple(fields["strategies"])
    return RestoreRequest(**fields)


def backup_job_flow(
    backend: Mapping[str, Any], store: Mapping[str, Any], request: Mapping[str, Any]
) -> Flow:
    """The backup flow, from JSON-able descriptions (a conductor's flow factory).

    `backend` and `store` are ``{"name", "driver", "options"}``: the driver
    (namespace ``pieceworks.drivers``) or store (``pieceworks.stores``) is
    built by entry-point name with the options as keyword arguments.
    `request` holds `BackupRequest`'s fields; it must carry its
    ``backup_id`` so that every rebuild names its atoms alike.
    """
    return backup_flow(_backend(backend), _store(store), _backup_request(request))


def restore_job_flow(
    backend: Mapping[str, Any], store: Mapping[str, Any], request: Mapping[str, Any]
) -> Flow:
    """The restore flow, from JSON-able descriptions (see `backup_job_flow`)."""
    return restore_flow(_backend(backend), _store(store), _restore_request(request))


# -- configuration -------------------------------------------------------------


def jobboard_conf(conf: JobboardConf) -> dict[str, Any]:
    """TaskFlow's dict form of a jobboard configuration.

    ``redis://[:password@]host[:port]/namespace[?claim_expiry=S&db=N]``
    becomes ``{"board": "redis", "host", "port", "namespace", ...}``; a dict
    is copied as is (``board`` defaults to ``redis``).
    """
    if not isinstance(conf, str):
        out = dict(conf)
        out.setdefault("board", "redis")
        return out
    url = urllib.parse.urlsplit(conf)
    if url.scheme != "redis":
        raise PieceworksError(f"unsupported jobboard {url.scheme!r}: use redis://host:port/ns")
    out = {"board": "redis", "host": url.hostname or "127.0.0.1", "port": url.port or 6379}
    namespace = url.path.strip("/")
    if namespace:
        out["namespace"] = namespace
    if url.password:
        out["password"] = urllib.parse.unquote(url.password)
    if url.username:
        out["username"] = urllib.parse.unquote(url.username)
    for key, value in urllib.parse.parse_qsl(url.query):
        out[key] = value
    return out


def _describe_board(conf: Mapping[str, Any]) -> str:
    """The board's address for logs: never its password."""
    return (
        f"{conf.get('board')}://{conf.get('host')}:{conf.get('port')}/{conf.get('namespace', '')}"
    )


@contextlib.contextmanager
def _persistence(url: str) -> Iterator[PersistenceBackend]:
    backend = persistence_backends.fetch({"connection": url})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        yield backend
    finally:
        backend.close()


@contextlib.contextmanager
def _board(
    name: str, conf: Mapping[str, Any], persistence: PersistenceBackend
) -> Iterator[JobBoard]:
    """A connected plain TaskFlow board (for posting and watching, not claiming)."""
    board = jobs_backends.fetch(name, dict(conf), persistence=persistence)
    board.connect()
    try:
        yield board
    finally:
        board.close()


# -- posting and watching jobs ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PostedJob:
    """A job on the board and where its state is persisted.

    `job_uuid` names the job on the jobboard; `book_uuid` and `flow_uuid`
    its logbook and flow detail in the persistence backend; `result_atom`
    is the atom whose persisted result is the operation's result.
    """

    job_uuid: str
    name: str
    book_uuid: str
    flow_uuid: str
    result_atom: str


def _post(
    conf: JobboardConf,
    persistence_url: str,
    job_name: str,
    factory: str,
    kwargs: dict[str, Any],
    result_atom: str,
) -> PostedJob:
    board_conf = jobboard_conf(conf)
    with _persistence(persistence_url) as persistence:
        book = models.LogBook(f"pieceworks-{job_name}")
        detail = models.FlowDetail(job_name, uuid=book.uuid)
        book.add(detail)
        engines.save_factory_details(detail, factory, factory_args=(), factory_kwargs=kwargs)
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.save_logbook(book)
        with _board(f"poster-{socket.gethostname()}", board_conf, persistence) as board:
            job = board.post(job_name, book=book, details={"flow_uuid": detail.uuid, "store": {}})
    LOG.info("posted job %s (%s) on %s", job.uuid, job_name, _describe_board(board_conf))
    return PostedJob(job.uuid, job_name, book.uuid, detail.uuid, result_atom)


def _spec(conf: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check a ``{"name", "driver", "options"}`` description; return a JSON-able copy."""
    options = dict(conf.get("options", {}))
    if what == "backend":
        BackendSpec(str(conf["name"]), str(conf["driver"]), _spec_options(options))
    else:
        StoreSpec(str(conf["name"]), str(conf["driver"]), _spec_options(options))
    return {"name": str(conf["name"]), "driver": str(conf["driver"]), "options": options}


def _request_dict(request: BackupRequest | RestoreRequest) -> dict[str, Any]:
    fields = dataclasses.asdict(request)
    fields["strategies"] = list(request.strategies)
    return fields


def _job_kwargs(
    backend: Mapping[str, Any], store: Mapping[str, Any], req: BackupRequest | RestoreRequest
) -> dict[str, Any]:
    """The JSON-able arguments a conductor rebuilds the job's flow from."""
    return {
        "backend": _spec(backend, "backend"),
        "store": _spec(store, "store"),
        "request": _request_dict(req),
    }


def post_backup(
    jobboard: JobboardConf,
    persistence_url: str,
    backend: Mapping[str, Any],
    store: Mapping[str, Any],
    request: Mapping[str, Any],
) -> PostedJob:
    """Post a backup job; any conductor on the board may run it.

    `request` holds `BackupRequest`'s fields; it is validated here and a
    ``backup_id`` is assigned if missing. The logbook (one flow detail, with
    the factory ``backup_job_flow`` and these arguments) is saved before the
    job is posted. The options of `backend` and `store` are persisted with
    the flow detail (a conductor needs them), never posted on the board nor
    logged.
    """
    req = _backup_request(request)
    kwargs = _job_kwargs(backend, store, req)
    prefix = f"backup-{req.backup_id}"
    return _post(
        jobboard,
        persistence_url,
        prefix,
        f"{_MODULE}.backup_job_flow",
        kwargs,
        f"{prefix}.write-manifest",
    )


def post_restore(
    jobboard: JobboardConf,
    persistence_url: str,
    backend: Mapping[str, Any],
    store: Mapping[str, Any],
    request: Mapping[str, Any],
) -> PostedJob:
    """Post a restore job (`RestoreRequest`'s fields); see `post_backup`."""
    req = _restore_request(request)
    kwargs = _job_kwargs(backend, store, req)
    prefix = f"restore-{req.backup_id}-to-{req.volume_id}"
    return _post(
        jobboard,
        persistence_url,
        prefix,
        f"{_MODULE}.restore_job_flow",
        kwargs,
        f"{prefix}.restore-volume",
    )


def _flow_detail(persistence: PersistenceBackend, job: PostedJob) -> models.FlowDetail:
    with contextlib.closing(persistence.get_connection()) as conn:
        return conn.get_flow_details(job.flow_uuid)


def atom_states(persistence_url: str, job: PostedJob) -> dict[str, str | None]:
    """The persisted state of each atom of `job`'s flow (empty before it first ran)."""
    with _persistence(persistence_url) as persistence:
        return {atom.name: atom.state for atom in _flow_detail(persistence, job)}


def wait_for(
    jobboard: JobboardConf,
    persistence_url: str,
    job: PostedJob,
    *,
    timeout: float,
    poll: float = 0.2,
) -> dict[str, Any]:
    """Wait until `job` leaves the board, then return its persisted result.

    Raise `TimeoutError` if it is still on the board after `timeout`
    seconds, and `JobFailed` if its flow did not end in success (a conductor
    consumes a job whose flow failed, too).
    """
    board_conf = jobboard_conf(jobboard)
    deadline = time.monotonic() + timeout
    with _persistence(persistence_url) as persistence:
        with _board(f"watcher-{socket.gethostname()}", board_conf, persistence) as board:
            while any(j.uuid == job.job_uuid for j in board.iterjobs(ensure_fresh=True)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job.job_uuid} ({job.name}) still on the board")
                time.sleep(poll)
        detail = _flow_detail(persistence, job)
    if detail.state != "SUCCESS":
        raise JobFailed(f"job {job.job_uuid} ({job.name}) ended in state {detail.state}")
    for atom in detail:
        if atom.name == job.result_atom:
            return dict(atom.results)
    raise JobFailed(f"job {job.job_uuid} ({job.name}) has no result from {job.result_atom}")


def destroy_job_book(persistence_url: str, job: PostedJob) -> None:
    """Delete `job`'s logbook (flow detail and atoms) from the persistence backend."""
    with (
        _persistence(persistence_url) as persistence,
        contextlib.closing(persistence.get_connection()) as conn,
    ):
        conn.destroy_logbook(job.book_uuid)


# -- conductors ----------------------------------------------------------------


class LeasedRedisJobBoard(RedisJobBoard):
    """TaskFlow's Redis jobboard whose claims die with their claimer.

    Every claim is made with an expiry of `claim_expiry` seconds and renewed
    every third of it by a daemon thread for as long as this process holds
    it (until consumed, abandoned or trashed). A killed conductor stops
    renewing; its claim expires and the job can be claimed again. Before
    renewing, the thread checks that the claim is still this owner's: one
    that expired (the process stalled for longer than the expiry) is given
    up and logged, never renewed on another owner's behalf.
    """

    def __init__(
        self,
        name: str,
        conf: dict[str, Any],
        persistence: PersistenceBackend | None = None,
        *,
        claim_expiry: float = DEFAULT_CLAIM_EXPIRY,
        on_claim: Callable[[Job, str], None] | None = None,
    ) -> None:
        if claim_expiry <= 0:
            raise PieceworksError(f"claim expiry must be positive, not {claim_expiry}")
        super().__init__(name, conf, persistence=persistence)
        self.claim_expiry = claim_expiry
        self._on_claim = on_claim
        self._held: dict[str, tuple[Job, str]] = {}
        self._held_lock = threading.Lock()
        self._stopping = threading.Event()
        self._renewer: threading.Thread | None = None

    def claim(self, job: Job, who: str, expiry: float | None = None) -> None:
        """Claim `job` for `who`, expiring unless renewed (by this board)."""
        super().claim(job, who, expiry=self.claim_expiry if expiry is None else expiry)
        with self._held_lock:
            self._held[job.uuid] = (job, who)
            if self._renewer is None or not self._renewer.is_alive():
                self._stopping.clear()
                self._renewer = threading.Thread(
                    target=self._renew_claims, name="pieceworks-claim-renewer", daemon=True
                )
                self._renewer.start()
        if self._on_claim is not None:
            self._on_claim(job, who)

    def consume(self, job: Job, who: str) -> None:
        """Consume `job` and stop renewing its claim."""
        try:
            super().consume(job, who)
        finally:
            self._forget(job)

    def abandon(self, job: Job, who: str) -> None:
        """Abandon `job` (others may claim it at once) and stop renewing its claim."""
        try:
            super().abandon(job, who)
        finally:
            self._forget(job)

    def trash(self, job: Job, who: str) -> None:
        """Trash `job` and stop renewing its claim."""
        try:
            super().trash(job, who)
        finally:
            self._forget(job)

    def close(self) -> None:
        """Stop renewing (claims still held then expire) and disconnect."""
        self._stopping.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=5)
        super().close()

    def _forget(self, job: Job) -> None:
        with self._held_lock:
            self._held.pop(job.uuid, None)

    def _renew_claims(self) -> None:
        while not self._stopping.wait(self.claim_expiry / 3):
            with self._held_lock:
                held = list(self._held.values())
            for job, who in held:
                try:
                    owner = self.find_owner(job)
                    if owner != who:
                        LOG.error("lost the claim on job %s (owner now %s)", job.uuid, owner)
                        self._forget(job)
                        continue
                    if isinstance(job, RedisJob):
                        job.extend_expiry(self.claim_expiry)
                except Exception:  # keep renewing the others; retry next round
                    LOG.warning("could not renew the claim on job %s", job.uuid, exc_info=True)


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
        LOG.info("%s claimed job %s (%s)", who, job.uuid, job.name)
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
    with _persistence(persistence_url) as persistence:
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
            LOG.info("%s %s job %s (%s)", name, kind, job.uuid, job.name)
            if events is not None:
                events({"event": kind, "job": job.uuid, "who": name})
            if max_dispatches is not None and finished >= max_dispatches:
                conductor.stop()

        conductor.notifier.register("running_start", on_running)
        for event in ("job_consumed", "job_abandoned", "job_trashed"):
            conductor.notifier.register(event, on_done)

        def on_signal(signum: int, _frame: types.FrameType | None) -> None:
            LOG.info("%s: signal %d, stopping after the current atom", name, signum)
            conductor.stop()

        for sig in stop_on_signals:
            signal.signal(sig, on_signal)
        LOG.info("conductor %s on %s (engine %s)", name, _describe_board(board_conf), engine)
        conductor.connect()
        try:
            if max_dispatches is None or max_dispatches > 0:
                conductor.run()
        finally:
            conductor.close()
    return finished


# -- command line ----------------------------------------------------------------


def _event_writer(stream: IO[str]) -> EventSink:
    lock = threading.Lock()

    def write(event: dict[str, Any]) -> None:
        line = json.dumps({**event, "t": time.time()}, sort_keys=True)
        with lock:
            stream.write(line + "\n")
            stream.flush()

    return write


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``conductor --jobboard redis://... --persistence postgresql://...``."""
    parser = argparse.ArgumentParser(
        prog="python -m pieceworks.common_algorithms.jobs",
        description="Run pieceworks jobs from a TaskFlow jobboard.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cond = commands.add_parser("conductor", help="claim and run jobs until stopped")
    cond.add_argument("--jobboard", required=True, help="redis://host:port/namespace")
    cond.add_argument("--persistence", required=True, help="postgresql://user@host/db")
    cond.add_argument("--name", default=f"conductor-{socket.gethostname()}")
    cond.add_argument("--max-dispatches", type=int, default=None)
    cond.add_argument("--engine", choices=ENGINES, default="serial")
    cond.add_argument("--wait-timeout", type=float, default=0.5)
    cond.add_argument(
        "--claim-expiry",
        type=float,
        default=None,
        help=f"seconds a dead conductor's claim survives (default {DEFAULT_CLAIM_EXPIRY:g})",
    )
    cond.add_argument("--events", default=None, help="append JSON-lines events to this file")
    cond.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # schema checks at every start
    conf = jobboard_conf(args.jobboard)
    if args.claim_expiry is not None:
        conf["claim_expiry"] = args.claim_expiry
    with contextlib.ExitStack() as stack:
        events = None
        if args.events:
            events = _event_writer(stack.enter_context(open(args.events, "a", encoding="utf-8")))
        run_conductor(
            args.name,
            conf,
            args.persistence,
            max_dispatches=args.max_dispatches,
            engine=args.engine,
            wait_timeout=args.wait_timeout,
            events=events,
            stop_on_signals=(signal.SIGTERM, signal.SIGINT),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
