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

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from pieceworks.common_algorithms.composed import COMPOSED_FACTORY
from pieceworks.execution.board import JobboardConf
from pieceworks.execution.jobs import PostedJob, post_job
from pieceworks.registry import Composition

__all__ = ["post_composed"]


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
    recipe = composition.recipe()
    names = list(backends or composition.backends())
    atoms = [node.name for node, _ in composition.flow.iter_nodes()]
    result = result_atom or (atoms[-1] if atoms else "")
    return post_job(
        jobboard,
        persistence_url,
        name=name or f"{composition.flow.name}-{secrets.token_hex(6)}",
        factory=COMPOSED_FACTORY,
        kwargs={"recipe": recipe, "backends": names, "store": store},
        result_atom=result,
        backends=names,
        stores=[store],
        values=values,
        priority=priority,
    )
