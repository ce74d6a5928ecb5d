"""Posting a manager's composed flow as a job that any conductor can run and resume.

    composition = Composition("create-backup")
    composition.add_task(ReserveQuota, ledger="/var/lib/quota")
    composition.add_piece(registry.find_one(["live-backup"], backend="lab"), in_use=True)
    composition.add_task(UpdateRecord, rebind={"result": "lab.backup.result"})
    job = post_composed(board_url, persistence_url, composition, store="lab",
                        values={"volume_id": "vol-1"})
    record = wait_for(board_url, persistence_url, job)   # UpdateRecord's result

The job carries no closure and no secret: its flow detail records the
factory `COMPOSED_FACTORY` with the composition's JSON recipe (pieces by
backend, registration name and attributes, with their build arguments;
manager tasks by import path) and the backend and store names. The
conductor that claims it (`pieceworks.execution.conductor`, which routes by
those names) rebuilds the flow from its own configuration and TaskFlow
resumes it from the persisted state: a conductor killed mid-transfer leaves
the atoms it finished done, and the next conductor runs only the rest.
`values` seed the engine's store (the request values the pieces read from
it, such as ``volume_id``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from taskflow import engines
from taskflow.jobs.base import JobPriority
from taskflow.persistence import models

from pieceworks.common_algorithms.composed import COMPOSED_FACTORY
from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution.board import (
    JobboardConf,
    connected_board,
    describe_board,
    jobboard_conf,
)
from pieceworks.execution.jobs import PRIORITIES, PostedJob, update_book_meta
from pieceworks.protocols import ConfigError, validate_id
from pieceworks.registry import Composition

__all__ = ["post_composed"]

log = logging.getLogger(__name__)


def _json(what: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON-able to travel in a job: {exc}") from None


def post_composed(
    jobboard: JobboardConf,
    persistence_url: str,
    composition: Composition,
    *,
    store: str,
    values: Mapping[str, Any] | None = None,
    backends: Sequence[str] | None = None,
    result_atom: str | None = None,
    name: str | None = None,
    priority: str = "normal",
) -> PostedJob:
    """Post `composition` as a job; a conductor configuring its backends and `store` runs it.

    `backends` defaults to the backends of the composition's pieces; each
    is registered on the conductor with `register_backend` against the
    store named `store`. `values` seed the engine's store. `result_atom` is
    the atom whose result `wait_for` returns (default: the flow's last
    atom). `name` names the job (default: the flow's name and a random
    suffix). Raise `ConfigError` if the composition cannot be recorded (see
    `Composition.recipe`), for a bad name, non-JSON values or an unknown
    priority.
    """
    if priority not in PRIORITIES:
        raise ConfigError(f"unknown priority {priority!r}: choose one of {', '.join(PRIORITIES)}")
    recipe = composition.recipe()
    names = [validate_id("backend name", b) for b in (backends or composition.backends())]
    validate_id("store name", store)
    atoms = [node.name for node, _ in composition.flow.iter_nodes()]
    result = result_atom or (atoms[-1] if atoms else "")
    job_name = name or f"{composition.flow.name}-{uuid.uuid4().hex[:12]}"
    details: dict[str, Any] = {
        "flow_uuid": "",
        "store": _json("values", dict(values or {})),
        "backends": names,
        "stores": [store],
        "result_atom": result,
    }
    kwargs = {"recipe": recipe, "backends": names, "store": store}
    board_conf = jobboard_conf(jobboard)
    with open_persistence(persistence_url) as persistence:
        book = models.LogBook(f"pieceworks-{job_name}")
        book.meta = {
            "pieceworks": True,
            "jobboard": describe_board(board_conf),
            "result_atom": result,
            "posted": time.time(),
        }
        detail = models.FlowDetail(job_name, uuid=book.uuid)
        book.add(detail)
        engines.save_factory_details(
            detail, COMPOSED_FACTORY, factory_args=(), factory_kwargs=kwargs
        )
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.save_logbook(book)
        details["flow_uuid"] = detail.uuid
        with connected_board(f"poster-{socket.gethostname()}", board_conf, persistence) as board:
            job = board.post(
                job_name,
                book=book,
                details=details,
                priority=JobPriority(priority.upper().replace("-", "_")),
            )
        update_book_meta(persistence, book.uuid, job_uuid=job.uuid)
    log.info("posted composed job %s (%s) on %s", job.uuid, job_name, describe_board(board_conf))
    return PostedJob(job.uuid, job_name, book.uuid, detail.uuid, result)
