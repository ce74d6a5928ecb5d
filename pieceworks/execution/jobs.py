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
import logging
import socket
import time
from collections.abc import Mapping
from typing import Any

from taskflow import engines
from taskflow.persistence import models
from taskflow.persistence.base import Backend as PersistenceBackend

from pieceworks.common_algorithms.jobs import (
    BACKUP_FACTORY,
    RESTORE_FACTORY,
    backup_request,
    restore_request,
    spec_options,
)
from pieceworks.common_algorithms.requests import BackupRequest, RestoreRequest
from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution.board import (
    JobboardConf,
    connected_board,
    describe_board,
    jobboard_conf,
)
from pieceworks.protocols import BackendSpec, PieceworksError, StoreSpec

__all__ = [
    "JobFailed",
    "PostedJob",
    "atom_states",
    "destroy_job_book",
    "post_backup",
    "post_restore",
    "wait_for",
]

log = logging.getLogger(__name__)


class JobFailed(PieceworksError):
    """A job ended without success (its flow failed or was reverted)."""


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
    with open_persistence(persistence_url) as persistence:
        book = models.LogBook(f"pieceworks-{job_name}")
        detail = models.FlowDetail(job_name, uuid=book.uuid)
        book.add(detail)
        engines.save_factory_details(detail, factory, factory_args=(), factory_kwargs=kwargs)
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.save_logbook(book)
        with connected_board(f"poster-{socket.gethostname()}", board_conf, persistence) as board:
            job = board.post(job_name, book=book, details={"flow_uuid": detail.uuid, "store": {}})
    log.info("posted job %s (%s) on %s", job.uuid, job_name, describe_board(board_conf))
    return PostedJob(job.uuid, job_name, book.uuid, detail.uuid, result_atom)


def _spec(conf: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check a ``{"name", "driver", "options"}`` description; return a JSON-able copy."""
    options = dict(conf.get("options", {}))
    if what == "backend":
        BackendSpec(str(conf["name"]), str(conf["driver"]), spec_options(options))
    else:
        StoreSpec(str(conf["name"]), str(conf["driver"]), spec_options(options))
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
    req = backup_request(request)
    kwargs = _job_kwargs(backend, store, req)
    prefix = f"backup-{req.backup_id}"
    return _post(
        jobboard, persistence_url, prefix, BACKUP_FACTORY, kwargs, f"{prefix}.write-manifest"
    )


def post_restore(
    jobboard: JobboardConf,
    persistence_url: str,
    backend: Mapping[str, Any],
    store: Mapping[str, Any],
    request: Mapping[str, Any],
) -> PostedJob:
    """Post a restore job (`RestoreRequest`'s fields); see `post_backup`."""
    req = restore_request(request)
    kwargs = _job_kwargs(backend, store, req)
    prefix = f"restore-{req.backup_id}-to-{req.volume_id}"
    return _post(
        jobboard, persistence_url, prefix, RESTORE_FACTORY, kwargs, f"{prefix}.restore-volume"
    )


def _flow_detail(persistence: PersistenceBackend, job: PostedJob) -> models.FlowDetail:
    with contextlib.closing(persistence.get_connection()) as conn:
        return conn.get_flow_details(job.flow_uuid)


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

    Raise `TimeoutError` if it is still on the board after `timeout`
    seconds, and `JobFailed` if its flow did not end in success (a conductor
    consumes a job whose flow failed, too).
    """
    board_conf = jobboard_conf(jobboard)
    deadline = time.monotonic() + timeout
    with open_persistence(persistence_url) as persistence:
        watcher = f"watcher-{socket.gethostname()}"
        with connected_board(watcher, board_conf, persistence) as board:
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
        open_persistence(persistence_url) as persistence,
        contextlib.closing(persistence.get_connection()) as conn,
    ):
        conn.destroy_logbook(job.book_uuid)
