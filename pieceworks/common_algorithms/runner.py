"""Run a common algorithm's flow on a TaskFlow engine and collect what happened.

`run_flow` loads the flow into an engine (serial by default, persistence
optional: any TaskFlow persistence URL such as ``sqlite:////path/pw.db`` or
``postgresql://...``), forwards task progress to a callback, records every
strategy that failed before the one that succeeded, and turns "every
strategy failed" into one `AllStrategiesFailed` error listing each cause.

`open_persistence` is the one place that opens a TaskFlow persistence
backend: this runner uses it, and so does `pieceworks.execution` (posting,
watching and running jobs).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from taskflow import engines, states, task
from taskflow.flow import Flow
from taskflow.persistence import backends as persistence_backends
from taskflow.persistence import models
from taskflow.persistence.base import Backend as PersistenceBackend
from taskflow.types.failure import Failure

from pieceworks.common_algorithms.operations.fallback import FINAL_ERRORS, describe_failure
from pieceworks.common_algorithms.operations.plan import AllStrategiesFailed, Attempt
from pieceworks.common_algorithms.operations.reverts import cleanup_errors

log = logging.getLogger(__name__)

__all__ = [
    "EngineOptions",
    "ProgressEvent",
    "RunRecord",
    "iter_tasks",
    "load_engine",
    "migrate",
    "open_persistence",
    "persistence_conf",
    "run_flow",
]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of a task: fraction done and bytes."""

    task: str
    fraction: float
    bytes_done: int
    bytes_total: int


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class EngineOptions:
    """How to run flows.

    `persistence` is a TaskFlow persistence connection (``None``: in
    memory); `engine` is ``serial`` or ``parallel``.
    """

    persistence: str | None = None
    engine: str = "serial"


@dataclass
class RunRecord:
    """What a run did: the strategies tried and how each failed attempt ended."""

    retry_name: str
    current: str | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)

    def on_atom(self, state: str, details: dict[str, Any]) -> None:
        if details.get("retry_name") == self.retry_name and state == states.SUCCESS:
            result = details.get("result")
            if isinstance(result, dict):
                self.current = str(result.get("strategy"))
        elif state == states.FAILURE and self.current is not None:
            result = details.get("result")
            if isinstance(result, Failure):
                self.errors.setdefault(self.current, []).append(describe_failure(result))

    def failed_attempts(self) -> tuple[Attempt, ...]:
        return tuple(Attempt(s, "; ".join(errs)) for s, errs in self.errors.items())


#: Persistence URLs whose schema this process has brought up to date.
_MIGRATED: set[str] = set()
_MIGRATING = threading.Lock()


def load_engine(name: str) -> None:
    """Import the TaskFlow engine called `name` (``serial``, ``parallel``) now.

    `run_flow` imports it anyway, on the first run: TaskFlow's
    ``engines.load`` finds an engine by name among the ``taskflow.engines``
    entry points through stevedore, as this does. Loading it first lets a
    caller pay for that import (the engine and its dependencies, oslo.utils
    and futurist among them: a good part of a command's start-up) before the
    work starts (`pieceworks.cli.startup`). `ValueError` if no installed
    engine has that name.
    """
    from stevedore import driver  # noqa: PLC0415 (what engines.load uses)
    from stevedore.exception import NoMatches  # noqa: PLC0415
    from taskflow.engines.helpers import ENGINES_NAMESPACE  # noqa: PLC0415

    try:
        driver.DriverManager(ENGINES_NAMESPACE, name)
    except NoMatches:
        raise ValueError(f"no TaskFlow engine called {name!r} is installed") from None


def persistence_conf(url: str) -> dict[str, Any]:
    """TaskFlow's persistence configuration for `url`: a database's pooled connections checked
    before each use (SQLAlchemy's ``pool_pre_ping``).

    TaskFlow pings pooled connections for MySQL only: after a PostgreSQL
    outage (a restart, a failover, a network cut), every connection pooled
    before it failed once at its next use, so a long-lived conductor failed
    a step's write or a logbook removal well after the database was back.
    Other URLs (SQLite: no pool; ``memory://``, ``dir://``: no SQLAlchemy)
    are left as they are.
    """
    conf: dict[str, Any] = {"connection": url}
    if url.split(":", 1)[0].lower().startswith(("postgres", "mysql")):
        conf["engine_args"] = {"pool_pre_ping": True}
    return conf


#: Tries of a schema upgrade that another process may be running at the same time.
UPGRADE_TRIES = 6


def migrate(url: str) -> None:
    """Bring the TaskFlow schema at `url` up to date (alembic migrations); idempotent."""
    backend = persistence_backends.fetch({"connection": url})
    try:
        _upgrade(backend)
    finally:
        backend.close()


def _upgrade(backend: PersistenceBackend) -> None:
    """Run TaskFlow's schema upgrade on `backend`, tried again while another process runs one.

    Two processes that open a new database at once (two commands started
    together, a conductor and ``jobs migrate``) both find no schema and both
    create its tables: the second failed with ``StorageFailure: Failed
    upgrading database version ... table logbooks already exists``. Its DDL
    is rolled back (SQLite and PostgreSQL run it in a transaction), so it is
    tried again after a short wait (tenacity, up to `UPGRADE_TRIES` tries,
    about 6 s in all): by then the first has finished and the upgrade finds
    the schema current. A failure that lasts is raised as it was.
    """
    import tenacity  # noqa: PLC0415 (only flows with persistence need it)
    from taskflow.exceptions import StorageFailure  # noqa: PLC0415

    def log_retry(state: tenacity.RetryCallState) -> None:
        failed = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "upgrading the TaskFlow schema failed (another process may be creating it): %s;"
            " trying again",
            str(failed).splitlines()[0] if failed else "unknown error",
        )

    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(StorageFailure),
        stop=tenacity.stop_after_attempt(UPGRADE_TRIES),
        wait=tenacity.wait_random_exponential(multiplier=0.2, max=2.0),
        before_sleep=log_retry,
        reraise=True,
    ):
        with attempt, contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()


def _migrate_once(url: str, backend: PersistenceBackend) -> None:
    """Migrate `url` the first time this process opens it (threads wait for the first).

    TaskFlow's migrations are not safe to run from several threads at once
    (alembic's shared state raises `KeyError`), and checking on every open
    costs a round of queries: once per process, as Octavia does.
    """
    with _MIGRATING:
        if url in _MIGRATED:
            return
        _upgrade(backend)
        _MIGRATED.add(url)


@contextlib.contextmanager
def open_persistence(url: str) -> Iterator[PersistenceBackend]:
    """A TaskFlow persistence backend for `url` (its schema brought up to date), closed after.

    `url` is any TaskFlow persistence connection: ``sqlite:////path/pw.db``,
    ``postgresql://user@host/db``, ``memory://``. The schema is migrated
    the first time a process opens `url` (see `migrate`); safe to call from
    many threads at once.
    """
    backend = persistence_backends.fetch(persistence_conf(url))
    try:
        _migrate_once(url, backend)
        yield backend
    finally:
        backend.close()


@contextlib.contextmanager
def _persistence(url: str | None, name: str) -> Iterator[dict[str, Any]]:
    if url is None:
        yield {}
        return
    with open_persistence(url) as backend:
        book = models.LogBook(name)
        detail = models.FlowDetail(name, uuid=book.uuid)
        book.add(detail)
        with contextlib.closing(backend.get_connection()) as conn:
            conn.save_logbook(book)
        yield {"backend": backend, "book": book, "flow_detail": detail}


def iter_tasks(flow: Flow) -> Iterator[task.Task]:
    """Every task of `flow` and of its subflows, depth first."""
    for node, _meta in flow.iter_nodes():
        if isinstance(node, Flow):
            yield from iter_tasks(node)
        elif isinstance(node, task.Task):
            yield node


def _progress_relay(flow: Flow, callback: ProgressCallback | None) -> None:
    if callback is None:
        return

    for atom in iter_tasks(flow):

        def relay(event_type: str, details: dict[str, Any], name: str = atom.name) -> None:
            callback(
                ProgressEvent(
                    name,
                    float(details.get("progress", 0.0)),
                    int(details.get("bytes_done", 0)),
                    int(details.get("bytes_total", 0)),
                )
            )

        atom.notifier.register(task.EVENT_UPDATE_PROGRESS, relay)


def _attach_cleanup(exc: BaseException, flow: Flow) -> None:
    """Record on `exc` (``cleanup_errors``) the reverts of `flow` that failed."""
    errors = cleanup_errors(iter_tasks(flow))
    if errors:
        exc.cleanup_errors = errors  # type: ignore[attr-defined]


def run_flow(
    flow: Flow,
    *,
    operation: str,
    backend: str,
    prefix: str,
    options: EngineOptions | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run `flow` and return the value it provides under ``<prefix>.result``.

    The common algorithms name their atoms ``<prefix>.<step>``; the strategy
    retry, when there is one, is ``<prefix>.fallback``. Raise
    `AllStrategiesFailed` when that retry ran out of strategies; any other
    error (an unknown volume, say) propagates as is.
    """
    options = options or EngineOptions()
    record = RunRecord(f"{prefix}.fallback")
    _progress_relay(flow, progress)
    with _persistence(options.persistence, flow.name) as persisted:
        engine = engines.load(flow, engine=options.engine, **persisted)
        engine.atom_notifier.register("*", record.on_atom)
        try:
            engine.run()
        except FINAL_ERRORS as exc:
            _attach_cleanup(exc, flow)
            raise
        except Exception as exc:
            attempts = record.failed_attempts()
            if attempts:
                error = AllStrategiesFailed(operation, backend, attempts)
                _attach_cleanup(error, flow)
                raise error from exc
            _attach_cleanup(exc, flow)
            raise
        result = engine.storage.fetch(f"{prefix}.result")
    return dict(result)
