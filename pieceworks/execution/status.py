"""What a job is doing or did: its state, owner, atoms and result, by job id.

A job is on the jobboard while it waits (``UNCLAIMED``) or runs
(``CLAIMED``, with its conductor as owner); once consumed it is gone from the
board and its logbook in the persistence backend says how it ended (the flow
detail's state: ``SUCCESS``, ``FAILURE``, ``REVERTED``...). Every logbook
pieceworks posts carries ``meta["job_uuid"]``, so a finished job is still
found by its id until its logbook is removed (`remove_finished`).

Reading order: a job's board state is read first and its logbook after.
TaskFlow's engine saves the flow detail's final state before its conductor
consumes the job, so a logbook read once the job is seen gone holds the
outcome. The other order (logbook, then board) could pair a ``RUNNING``
detail read just before the end with the board's "gone" read just after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any, Final

from taskflow.jobs.base import Job, JobBoard
from taskflow.persistence import models
from taskflow.persistence.base import Backend as PersistenceBackend

from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution.board import (
    JobboardConf,
    connected_board,
    describe_board,
    jobboard_conf,
)
from pieceworks.execution.jobs import failure_reasons
from pieceworks.failpoints import failpoint
from pieceworks.protocols import NotFound

__all__ = [
    "BOARD_STATES",
    "FINAL_STATES",
    "JobNotFound",
    "JobStatus",
    "job_status",
    "list_jobs",
    "remove_finished",
]

log = logging.getLogger(__name__)

#: States of a job still on the board.
BOARD_STATES: Final = ("UNCLAIMED", "CLAIMED")

#: Flow states that are a job's outcome once it has left the board. Any other
#: state (``RUNNING``, ``PENDING``, ``REVERTING``, ``RESUMING``, ``SUSPENDED``...,
#: or ``UNKNOWN``: no flow detail) is not: the job is still going, or its
#: conductor gave it up without recording an outcome (see `JobStatus.unfinished`).
FINAL_STATES: Final = ("SUCCESS", "FAILURE", "REVERTED")


class JobNotFound(NotFound):
    """No job with this id on the board nor in the persistence backend."""


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """One job: `state` is the board's (``UNCLAIMED``/``CLAIMED``) or, once finished,
    the flow's (``SUCCESS``, ``FAILURE``, ``REVERTED``...).

    `atoms` maps atom name → persisted state; `result` is the operation's
    result once it succeeded, `errors` why it did not (masked texts).
    `posted` and `finished` are Unix times.
    """

    job_id: str
    name: str
    state: str
    owner: str | None
    atoms: dict[str, str | None]
    result: dict[str, Any] | None
    errors: list[str]
    posted: float | None
    finished: float | None

    @property
    def done(self) -> bool:
        """Whether the job has ended with a final outcome (a state in `FINAL_STATES`)."""
        return self.state in FINAL_STATES

    @property
    def unfinished(self) -> bool:
        """Whether the job is off the board while its flow reads a non-final state.

        Never for a job consumed normally (its final state is saved first);
        it is a job its conductor trashed, or consumed after failing to save
        the outcome. It may stay so forever: `jobs watch` gives up on it
        after a while (``WATCH_SETTLE``).
        """
        return self.state not in BOARD_STATES and not self.done

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``pieceworks jobs show --json``."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state,
            "owner": self.owner,
            "atoms": dict(self.atoms),
            "result": self.result,
            "errors": list(self.errors),
            "posted": self.posted,
            "finished": self.finished,
        }


def _books(persistence: PersistenceBackend) -> Iterator[models.LogBook]:
    with contextlib.closing(persistence.get_connection()) as conn:
        yield from (b for b in conn.get_logbooks(lazy=True) if (b.meta or {}).get("pieceworks"))


def _full_book(persistence: PersistenceBackend, book_uuid: str) -> models.LogBook:
    with contextlib.closing(persistence.get_connection()) as conn:
        return conn.get_logbook(book_uuid)


def _owner(job: Job) -> str | None:
    try:
        return job.board.find_owner(job)
    except TypeError:  # TaskFlow decodes a missing owner key (None) and fails
        return None


def _board_state(job: Job | None) -> str | None:
    """`job`'s board state read now, or None if it has left the board.

    TaskFlow answers ``COMPLETE`` for a job listed and consumed since.
    """
    if job is None:
        return None
    state = str(job.state)
    return state if state in BOARD_STATES else None


def _status(persistence: PersistenceBackend, book_uuid: str, job: Job | None) -> JobStatus:
    """The status of the job of logbook `book_uuid`; `job` as listed on the board, if it was.

    The board state is read before the logbook (see the module docstring).
    """
    board_state = _board_state(job)
    owner = _owner(job) if job is not None and board_state is not None else None
    failpoint("status.board-read")
    book = _full_book(persistence, book_uuid)
    meta = book.meta or {}
    details = list(book)
    detail = details[0] if details else None
    atoms = {a.name: a.state for a in detail} if detail is not None else {}
    result_atom = meta.get("result_atom")
    result = None
    errors: list[str] = []
    if board_state is not None:
        state = board_state
    else:
        state = str(detail.state) if detail is not None and detail.state else "UNKNOWN"
    if board_state is None and detail is not None:
        if detail.state == "SUCCESS":
            for atom in detail:
                if atom.name == result_atom and isinstance(atom.results, dict):
                    result = dict(atom.results)
        else:
            errors = failure_reasons(detail)
    return JobStatus(
        job_id=str(meta.get("job_uuid") or (job.uuid if job else "")),
        name=detail.name if detail is not None else book.name,
        state=state,
        owner=owner,
        atoms=atoms,
        result=result,
        errors=errors,
        posted=meta.get("posted"),
        finished=meta.get("finished"),
    )


def _board_jobs(board: JobBoard) -> dict[str, Job]:
    return {j.uuid: j for j in board.iterjobs(ensure_fresh=True)}


def job_status(jobboard: JobboardConf, persistence_url: str, job_id: str) -> JobStatus:
    """The status of job `job_id`; raise `JobNotFound` if neither board nor logbooks know it."""
    conf = jobboard_conf(jobboard)
    with open_persistence(persistence_url) as persistence:
        with connected_board(f"status-{socket.gethostname()}", conf, persistence) as board:
            job = _board_jobs(board).get(job_id)
            if job is not None and job.book_uuid is not None:
                return _status(persistence, job.book_uuid, job)
        for book in _books(persistence):
            if (book.meta or {}).get("job_uuid") == job_id:
                return _status(persistence, book.uuid, None)
    raise JobNotFound(f"no job {job_id!r} on the board or in the persistence backend")


def list_jobs(
    jobboard: JobboardConf, persistence_url: str, *, state: str | None = None
) -> list[JobStatus]:
    """Every job on the board and every finished one of this board still logged, oldest first.

    `state` keeps only jobs in that state (``UNCLAIMED``, ``CLAIMED``,
    ``SUCCESS``, ``FAILURE``, ``REVERTED``...).
    """
    conf = jobboard_conf(jobboard)
    out: list[JobStatus] = []
    with (
        open_persistence(persistence_url) as persistence,
        connected_board(f"status-{socket.gethostname()}", conf, persistence) as board,
    ):
        on_board = _board_jobs(board)
        by_book = {j.book_uuid: j for j in on_board.values()}
        where = describe_board(conf)
        for book in _books(persistence):
            if (book.meta or {}).get("jobboard") != where:
                continue  # another board's job sharing this database
            job = by_book.get(book.uuid)
            if job is None and (book.meta or {}).get("job_uuid") in on_board:
                job = on_board[book.meta["job_uuid"]]
            out.append(_status(persistence, book.uuid, job))
    out.sort(key=lambda s: (s.posted or 0.0, s.job_id))
    if state is not None:
        out = [s for s in out if s.state == state.upper()]
    return out


def remove_finished(persistence: PersistenceBackend, keep_seconds: float) -> int:
    """Destroy the logbooks of jobs finished more than `keep_seconds` ago; return how many."""
    cutoff = time.time() - keep_seconds
    removed = 0
    for book in list(_books(persistence)):
        finished = (book.meta or {}).get("finished")
        if finished is not None and float(finished) < cutoff:
            with contextlib.closing(persistence.get_connection()) as conn:
                conn.destroy_logbook(book.uuid)
            removed += 1
            log.info("removed the logbook of job %s", (book.meta or {}).get("job_uuid"))
    return removed
