"""Posting jobs on a TaskFlow jobboard and waiting for their results.

A manager posts a job; any number of conductor processes (on any hosts,
`pieceworks.execution.conductor`) claim jobs, rebuild the flow by name and
run it with its state persisted in a shared TaskFlow persistence backend
(PostgreSQL)::

    job = post_backup(
        "redis://10.0.0.5:6379/pieceworks",
        "postgresql://pw@10.0.0.6/pieceworks",
        backend={"name": "lab", "driver": "file", "options": {"path": "/srv/volumes"}},
        store={"name": "lab", "driver": "posix", "options": {"path": "/srv/backups"}},
        request={"volume_id": "vol-1"},
    )
    result = wait_for("redis://10.0.0.5:6379/pieceworks", "postgresql://...", job)

Everything here is TaskFlow: `save_factory_details` records how to rebuild
the flow (``backup_job_flow`` of `pieceworks.common_algorithms.jobs` and its
JSON-able arguments) in the flow detail; the jobboard carries only the
logbook's id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from taskflow import engines
from taskflow.exceptions import NotFound, UnclaimableJob
from taskflow.jobs.base import JobPriority
from taskflow.persistence import models
from taskflow.persistence.base import Backend as PersistenceBackend

from pieceworks.common_algorithms.jobs import (
    BACKUP_FACTORY,
    REPLICATE_FACTORY,
    RESTORE_FACTORY,
    VERIFY_FACTORY,
    backup_request,
    replicate_request,
    restore_request,
    verify_request,
)
from pieceworks.common_algorithms.operations.requests import (
    BackupRequest,
    RestoreRequest,
    request_fields,
)
from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution.board import (
    JobboardConf,
    connected_board,
    describe_board,
    jobboard_conf,
)
from pieceworks.protocols import ConfigError, PieceworksError, WaitTimedOut, validate_id

__all__ = [
    "PRIORITIES",
    "JobFailed",
    "JobTimeout",
    "PostedJob",
    "atom_states",
    "cancel_job",
    "cancel_requested",
    "destroy_job_book",
    "failure_reasons",
    "update_book_meta",
    "update_flow_meta",
    "post_backup",
    "post_job",
    "post_replicate",
    "post_restore",
    "post_verify",
    "wait_for",
]

log = logging.getLogger(__name__)


class JobFailed(PieceworksError):
    """A job ended without success (its flow failed or was reverted)."""


class JobTimeout(WaitTimedOut):
    """A job had not ended when its waiter gave up (it may still end).

    `job_id` names the job; `waited_seconds` is how long it was waited for.
    The command line exits with ``ExitCode.TIMED_OUT`` (124).
    """

    def __init__(self, job_id: str, waited_seconds: float, what: str = "") -> None:
        label = f"job {job_id}" + (f" ({what})" if what else "")
        super().__init__(
            f"{label} has not ended after {waited_seconds:.1f} s of waiting;"
            " it is still on the board and may still end",
            waited_seconds,
        )
        self.job_id = job_id


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


#: Job priorities, as TaskFlow's boards order them.
PRIORITIES: Final = ("very-low", "low", "normal", "high", "very-high")


def _json(what: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON-able to travel in a job: {exc}") from None


def _priority(priority: str) -> JobPriority:
    if priority not in PRIORITIES:
        raise ConfigError(f"unknown priority {priority!r}: choose one of {', '.join(PRIORITIES)}")
    return JobPriority(priority.upper().replace("-", "_"))


def post_job(
    jobboard: JobboardConf,
    persistence_url: str,
    *,
    name: str,
    factory: str,
    kwargs: Mapping[str, Any],
    result_atom: str,
    backends: Sequence[str],
    stores: Sequence[str],
    values: Mapping[str, Any] | None = None,
    priority: str = "normal",
) -> PostedJob:
    """Post a job named `name` whose flow `factory(**kwargs, resolve=...)` rebuilds.

    `factory` is the dotted path of a flow factory, `kwargs` its JSON-able
    keyword arguments (names and plain values, never secrets): both are saved
    in the job's flow detail (`engines.save_factory_details`) in a new
    logbook before the job is posted. The job's details name `backends` and
    `stores` (a conductor claims only jobs whose names its host configures),
    `values` (seeding the engine's store) and `result_atom` (whose result
    `wait_for` returns). Every backend, store and backup or restore job goes
    through here. Raise `ConfigError` for a bad backend or store name,
    non-JSON `values` or an unknown `priority` (one of `PRIORITIES`),
    before anything is written.
    """
    job_priority = _priority(priority)
    names = [_name("backend", b) for b in backends]
    store_names = [_name("store", s) for s in stores]
    details: dict[str, Any] = {
        "flow_uuid": "",
        "store": _json("values", dict(values or {})),
        "backends": names,
        "stores": store_names,
        "result_atom": result_atom,
    }
    board_conf = jobboard_conf(jobboard)
    with open_persistence(persistence_url) as persistence:
        book = models.LogBook(f"pieceworks-{name}")
        book.meta = {
            "pieceworks": True,
            "jobboard": describe_board(board_conf),
            "result_atom": result_atom,
            "posted": time.time(),
        }
        detail = models.FlowDetail(name, uuid=book.uuid)
        book.add(detail)
        engines.save_factory_details(detail, factory, factory_args=(), factory_kwargs=dict(kwargs))
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.save_logbook(book)
        details["flow_uuid"] = detail.uuid
        with connected_board(f"poster-{socket.gethostname()}", board_conf, persistence) as board:
            job = board.post(name, book=book, details=details, priority=job_priority)
        update_book_meta(persistence, book.uuid, job_uuid=job.uuid)
    log.info("posted job %s (%s) on %s", job.uuid, name, describe_board(board_conf))
    return PostedJob(job.uuid, name, book.uuid, detail.uuid, result_atom)


def update_book_meta(persistence: PersistenceBackend, book_uuid: str, **updates: Any) -> None:
    """Merge `updates` into logbook `book_uuid`'s meta (its flow details are left alone)."""
    with contextlib.closing(persistence.get_connection()) as conn:
        stored = conn.get_logbook(book_uuid, lazy=True)
        only_meta = models.LogBook(stored.name, uuid=book_uuid)
        only_meta.created_at = stored.created_at
        only_meta.meta = {**(stored.meta or {}), **updates}
        conn.save_logbook(only_meta)


def update_flow_meta(persistence: PersistenceBackend, flow_uuid: str, **updates: Any) -> None:
    """Merge `updates` into flow detail `flow_uuid`'s meta (its atoms are left alone)."""
    with contextlib.closing(persistence.get_connection()) as conn:
        stored = conn.get_flow_details(flow_uuid, lazy=True)
        only_meta = models.FlowDetail(stored.name, uuid=flow_uuid)
        only_meta.state = stored.state
        only_meta.meta = {**(stored.meta or {}), **updates}
        conn.update_flow_details(only_meta)


def cancel_requested(persistence: PersistenceBackend, flow_uuid: str) -> bool:
    """Whether someone asked to cancel the job of flow detail `flow_uuid`."""
    with contextlib.closing(persistence.get_connection()) as conn:
        meta = conn.get_flow_details(flow_uuid, lazy=True).meta or {}
    return bool(meta.get("cancel_requested"))


def cancel_job(jobboard: JobboardConf, persistence_url: str, job_id: str) -> str:
    """Cancel job `job_id`; return ``"cancelled"`` or ``"requested"``.

    A job no conductor holds is claimed here, its flow detail set to
    ``REVERTED`` (meta ``error``: cancelled) and consumed: ``"cancelled"``.
    A claimed job gets ``meta["cancel_requested"]``: its conductor starts no
    further atom, reverts the flow and consumes the job (``"requested"``).
    Raise `JobFailed` if the job is no longer on the board (it has ended,
    or never existed).
    """
    conf = jobboard_conf(jobboard)
    who = f"canceller-{socket.gethostname()}-{os.getpid()}"
    with (
        open_persistence(persistence_url) as persistence,
        connected_board(who, conf, persistence) as board,
    ):
        job = next((j for j in board.iterjobs(ensure_fresh=True) if j.uuid == job_id), None)
        if job is None or job.book is None:
            raise JobFailed(f"job {job_id} is not on the board: it has ended or never existed")
        flow_uuid = str((job.details or {}).get("flow_uuid") or next(iter(job.book)).uuid)
        update_flow_meta(persistence, flow_uuid, cancel_requested=time.time())
        try:
            board.claim(job, who)
        except (UnclaimableJob, NotFound):
            log.info("cancel of job %s requested from its conductor", job_id)
            return "requested"
        update_flow_meta(persistence, flow_uuid, error=f"job {job_id} cancelled before it ran")
        with contextlib.closing(persistence.get_connection()) as conn:
            stored = conn.get_flow_details(flow_uuid, lazy=True)
            stored.state = "REVERTED"
            conn.update_flow_details(stored)
        board.consume(job, who)
        update_book_meta(persistence, job.book.uuid, finished=time.time())
    return "cancelled"


def _name(kind: str, name: str) -> str:
    if not isinstance(name, str):
        raise ConfigError(
            f"a job names its {kind} (a section of each conductor's configuration),"
            f" not {type(name).__name__}: no options or secrets travel in jobs"
        )
    return validate_id(f"{kind} name", name)


def _job_kwargs(backend: str, store: str, req: BackupRequest | RestoreRequest) -> dict[str, Any]:
    """The JSON-able arguments a conductor rebuilds the job's flow from: names and the request."""
    return {
        "backend": _name("backend", backend),
        "store": _name("store", store),
        "request": request_fields(req),
    }


def post_backup(
    jobboard: JobboardConf,
    persistence_url: str,
    backend: str,
    store: str,
    request: Mapping[str, Any],
    *,
    priority: str = "normal",
) -> PostedJob:
    """Post a backup job; a conductor that has `backend` and `store` configured may run it.

    `backend` and `store` are names: each conductor resolves them from its
    own host's configuration, so no option or secret is posted on the board
    or persisted. `request` holds `BackupRequest`'s fields; it is validated
    here and a ``backup_id`` is assigned if missing. The logbook (one flow
    detail, with the factory ``backup_job_flow`` and these arguments) is
    saved before the job is posted with `priority` (one of `PRIORITIES`).
    Raise `ConfigError` for a bad name, request or priority.
    """
    req = backup_request(request, strict=True)
    kind = (f"backup-{req.backup_id}", BACKUP_FACTORY, "write-manifest")
    return _post_operation(jobboard, persistence_url, kind, backend, store, req, priority)


def post_restore(
    jobboard: JobboardConf,
    persistence_url: str,
    backend: str,
    store: str,
    request: Mapping[str, Any],
    *,
    priority: str = "normal",
) -> PostedJob:
    """Post a restore job (`RestoreRequest`'s fields); see `post_backup`."""
    req = restore_request(request, strict=True)
    kind = (f"restore-{req.backup_id}-to-{req.volume_id}", RESTORE_FACTORY, "restore-volume")
    return _post_operation(jobboard, persistence_url, kind, backend, store, req, priority)


def post_verify(
    jobboard: JobboardConf,
    persistence_url: str,
    store: str,
    request: Mapping[str, Any],
    *,
    priority: str = "normal",
) -> PostedJob:
    """Post a verify job (`VerifyRequest`'s fields); a conductor that has `store` may run it.

    No backend is involved. The job's result (``wait_for``) is the
    verification's (``ok``, ``chunks_checked``, ``problems``...); a missing
    or damaged chunk fails the job with `CorruptionError` (``jobs show``
    names it). See `post_backup` for names, logbook and priority.
    """
    req = verify_request(request, strict=True)
    name = f"verify-{req.backup_id}"
    return post_job(
        jobboard,
        persistence_url,
        name=name,
        factory=VERIFY_FACTORY,
        kwargs={"store": _name("store", store), "request": request_fields(req)},
        result_atom=name,
        backends=[],
        stores=[store],
        priority=priority,
    )


def _post_operation(
    jobboard: JobboardConf,
    persistence_url: str,
    kind: tuple[str, str, str],
    backend: str,
    store: str,
    req: BackupRequest | RestoreRequest,
    priority: str,
) -> PostedJob:
    """Post one backend's operation on one store; `kind` is (job name, factory, result step)."""
    name, factory, result_step = kind
    return post_job(
        jobboard,
        persistence_url,
        name=name,
        factory=factory,
        kwargs=_job_kwargs(backend, store, req),
        result_atom=f"{name}.{result_step}",
        backends=[backend],
        stores=[store],
        priority=priority,
    )


def post_replicate(
    jobboard: JobboardConf,
    persistence_url: str,
    source: str,
    target: str,
    request: Mapping[str, Any],
    *,
    store: str | None = None,
    priority: str = "normal",
) -> PostedJob:
    """Post a replicate job: volume ``request["volume_id"]`` of backend `source` into
    backend `target`; a conductor that has both (and `store`, if named) may run it.

    `source`, `target` and `store` are names (see `post_backup`); `store`
    serves the via-store strategy and the run journal. `request` holds
    `ReplicateRequest`'s fields; an ``operation_id`` is assigned if missing.
    The job's result (``wait_for``) is the replication's result row
    (strategy, sizes, ``target_volume_id``...). Raise `ConfigError` for a
    bad name, request or priority, or for a copy of a volume onto itself.
    """
    req = replicate_request(request, strict=True)
    if source == target and req.target_volume == req.volume_id:
        raise ConfigError(
            f"replicating volume '{req.volume_id}' onto itself on backend '{source}':"
            " name another target volume or backend"
        )
    prefix = f"replicate-{req.operation_id}"
    kwargs = {
        "source": _name("backend", source),
        "target": _name("backend", target),
        "store": None if store is None else _name("store", store),
        "request": request_fields(req),
    }
    return post_job(
        jobboard,
        persistence_url,
        name=prefix,
        factory=REPLICATE_FACTORY,
        kwargs=kwargs,
        result_atom=f"{prefix}.release-source",
        backends=[source, target],
        stores=[] if store is None else [store],
        priority=priority,
    )


def _flow_detail(persistence: PersistenceBackend, job: PostedJob) -> models.FlowDetail:
    with contextlib.closing(persistence.get_connection()) as conn:
        return conn.get_flow_details(job.flow_uuid)


def failure_reasons(detail: models.FlowDetail) -> list[str]:
    """Why `detail`'s flow failed: ``"<atom>: <Type>: <message>"`` per failed atom (masked)."""
    reasons = []
    error = (detail.meta or {}).get("error")
    if error:
        reasons.append(str(error))
    for atom in detail:
        for failure in (atom.failure, atom.revert_failure):
            if failure is not None:
                kind = next(iter(failure), "Exception")
                reasons.append(f"{atom.name}: {kind.rsplit('.', 1)[-1]}: {failure.exception_str}")
    return reasons


def atom_states(persistence_url: str, job: PostedJob) -> dict[str, str | None]:
    """The persisted state of each atom of `job`'s flow (empty before it first ran)."""
    with open_persistence(persistence_url) as persistence:
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

    Raise `JobTimeout` (a `WaitTimedOut`, hence a `TimeoutError`) naming
    the job's id and the seconds waited if it is still on the board after
    `timeout` seconds, and `JobFailed` if its flow did not end in success (a conductor
    consumes a job whose flow failed, too).
    """
    board_conf = jobboard_conf(jobboard)
    started = time.monotonic()
    deadline = started + timeout
    with open_persistence(persistence_url) as persistence:
        watcher = f"watcher-{socket.gethostname()}"
        with connected_board(watcher, board_conf, persistence) as board:
            while any(j.uuid == job.job_uuid for j in board.iterjobs(ensure_fresh=True)):
                if time.monotonic() > deadline:
                    raise JobTimeout(job.job_uuid, time.monotonic() - started, job.name)
                time.sleep(poll)
        detail = _flow_detail(persistence, job)
    if detail.state != "SUCCESS":
        raise JobFailed(
            f"job {job.job_uuid} ({job.name}) ended in state {detail.state}: "
            + "; ".join(failure_reasons(detail) or ["no failure was recorded"])
        )
    for atom in detail:
        if atom.name == job.result_atom and isinstance(atom.results, Mapping):
            return dict(atom.results)
    raise JobFailed(f"job {job.job_uuid} ({job.name}) has no result from {job.result_atom}")


def destroy_job_book(persistence_url: str, job: PostedJob) -> None:
    """Delete `job`'s logbook (flow detail and atoms) from the persistence backend."""
    with (
        open_persistence(persistence_url) as persistence,
        contextlib.closing(persistence.get_connection()) as conn,
    ):
        conn.destroy_logbook(job.book_uuid)
