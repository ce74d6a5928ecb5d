"""Running flows at scale: jobs on a TaskFlow jobboard, conductors, workers.

One layer above `pieceworks.common_algorithms` (which builds flows and runs
them in process): `jobs` posts jobs and waits for their results, `board`
holds the jobboard with claims that die with their owner (and go by the
conductor process, not its name alone), `liveness` keeps one live conductor
per ``--name``, `conductor` claims and runs jobs, `janitor` removes finished
logbooks (retrying while the database is away). Conductors run as
``pieceworks conductor`` or ``python -m pieceworks.execution conductor ...``.

The public names below are imported on first use (PEP 562 ``__getattr__``):
a light submodule such as `pieceworks.execution.timings` (the conductor's
``--help``) must not import TaskFlow and the jobboard's clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pieceworks.execution.board import (
        DEFAULT_CLAIM_EXPIRY,
        LeasedRedisJobBoard,
        jobboard_conf,
    )
    from pieceworks.execution.conductor import ENGINES, run_conductor
    from pieceworks.execution.jobs import (
        JobFailed,
        JobTimeout,
        PostedJob,
        atom_states,
        destroy_job_book,
        post_backup,
        post_job,
        post_replicate,
        post_restore,
        post_verify,
        wait_for,
    )

#: Public name -> the submodule that defines it.
_WHERE = {
    "DEFAULT_CLAIM_EXPIRY": "board",
    "LeasedRedisJobBoard": "board",
    "jobboard_conf": "board",
    "ENGINES": "conductor",
    "run_conductor": "conductor",
    "JobFailed": "jobs",
    "JobTimeout": "jobs",
    "PostedJob": "jobs",
    "atom_states": "jobs",
    "destroy_job_book": "jobs",
    "post_backup": "jobs",
    "post_job": "jobs",
    "post_replicate": "jobs",
    "post_restore": "jobs",
    "post_verify": "jobs",
    "wait_for": "jobs",
}


def __getattr__(name: str) -> Any:
    """Import the submodule defining `name` on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "DEFAULT_CLAIM_EXPIRY",
    "ENGINES",
    "JobFailed",
    "JobTimeout",
    "LeasedRedisJobBoard",
    "PostedJob",
    "atom_states",
    "destroy_job_book",
    "jobboard_conf",
    "post_backup",
    "post_job",
    "post_replicate",
    "post_restore",
    "post_verify",
    "run_conductor",
    "wait_for",
]
