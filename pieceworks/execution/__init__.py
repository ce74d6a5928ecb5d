"""Running flows at scale: jobs on a TaskFlow jobboard, conductors, workers.

One layer above `pieceworks.common_algorithms` (which builds flows and runs
them in process): `jobs` posts jobs and waits for their results, `board`
holds the jobboard with claims that die with their owner, `conductor`
claims and runs jobs. Conductors run as ``python -m pieceworks.execution
conductor ...``.
"""

from pieceworks.execution.board import DEFAULT_CLAIM_EXPIRY, LeasedRedisJobBoard, jobboard_conf
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
    wait_for,
)

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
    "run_conductor",
    "wait_for",
]
