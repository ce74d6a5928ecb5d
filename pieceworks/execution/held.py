"""What the jobs still on a jobboard hold in a store, so that `recover` leaves it alone.

A run's lease (``leases/<backup id>``) and journal (``runs/<token>``, naming
its temporary snapshot) say which process owns them: host, pid, start time.
For a run of a job, that process is the conductor that claimed it, but the
work belongs to the job. When the conductor dies, the job stays on the board
and another conductor resumes it from the persisted state: the steps that
took the lease and the snapshot are done and are not run again, so the
resumed run goes on with the dead conductor's lease and snapshot, and
deletes them at its end. Seen from `pieceworks recover`, their owner is dead;
removing them made the resumed backup fail (its snapshot gone: the job
ended ``REVERTED``), or run without a lease.

So a marker belongs to a job still on the board (``UNCLAIMED`` or
``CLAIMED``) when it names the job's run: a journal's ``id`` is the job's
name (``backup-<backup id>``, ``replicate-<operation id>``), a lease's
``id`` the backup id of a job named ``backup-<backup id>``. `JobHeldStore`
is a view of a store that hides those markers from `list`, so recover never
sees them, and remembers each one for the report; `JobHeldJournal` does the
same for this host's local journal (``$PIECEWORKS_HOME/journal``: a
replication job without a store journals its snapshot there). Once the job has left the
board (it ended, or was cancelled) its leftovers are recovered as usual.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from zope.interface import implementer

from pieceworks.common_algorithms.backend import Store
from pieceworks.common_algorithms.gc.journal import JournalFile, LocalJournal
from pieceworks.common_algorithms.gc.markers import LEASE_PREFIX, RUN_PREFIX
from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution.board import JobboardConf, connected_board, jobboard_conf
from pieceworks.protocols import IObjectStore, ObjectInfo, ObjectNotFound

__all__ = [
    "BoardJob",
    "HeldMarker",
    "JobHeldJournal",
    "JobHeldStore",
    "holding_job",
    "jobs_on_board",
    "without_held",
]

#: The marker prefixes a job's run writes and a resumed run goes on using.
HELD_PREFIXES: Final = (RUN_PREFIX, LEASE_PREFIX)


@dataclass(frozen=True, slots=True)
class BoardJob:
    """A job still on the board: its id, name and board state (``UNCLAIMED``/``CLAIMED``)."""

    job_id: str
    name: str
    state: str


@dataclass(frozen=True, slots=True)
class HeldMarker:
    """A lease or journal (`key`) that `job` holds; `kind` is ``lease`` or ``run-journal``."""

    key: str
    kind: str
    job: BoardJob

    @property
    def reason(self) -> str:
        """Why it is kept, in words."""
        return (
            f"job {self.job.job_id} ({self.job.name}) is still on the jobboard"
            f" ({self.job.state}): the conductor that resumes it goes on with it"
        )


def jobs_on_board(jobboard: JobboardConf, persistence_url: str) -> dict[str, BoardJob]:
    """Every job on the board (waiting or running), by name.

    Raise `JobboardUnavailable` (`pieceworks.execution.board.check_board`
    gives the same) or the persistence backend's error if either cannot be
    reached: the caller cannot then tell what jobs hold.
    """
    conf = jobboard_conf(jobboard)
    found: dict[str, BoardJob] = {}
    with (
        open_persistence(persistence_url) as persistence,
        connected_board(f"recover-{socket.gethostname()}", conf, persistence) as board,
    ):
        for job in board.iterjobs(ensure_fresh=True):
            found[job.name] = BoardJob(job.uuid, job.name, str(job.state))
    return found


def holding_job(body: Any, jobs: Mapping[str, BoardJob]) -> BoardJob | None:
    """The job of `jobs` whose run wrote marker `body` (a decoded lease or journal), if any.

    A journal's ``id`` is its run's name, the job's; a lease's is the id
    the job's name carries: ``backup-<backup id>``, ``replicate-<operation
    id>`` (a replication through a store leases its staged chunks under
    its operation id). A composed job (`post_composed`) has a name of its
    own and is not found.
    """
    if not isinstance(body, dict):
        return None
    ident = str(body.get("id", ""))
    if not ident:
        return None
    kind = body.get("kind")
    names = (ident, f"backup-{ident}", f"replicate-{ident}") if kind == "lease" else (ident,)
    for name in names:
        if name in jobs:
            return jobs[name]
    return None


@implementer(IObjectStore)
class JobHeldStore:
    """A view of `objects` whose `list` leaves out the markers that jobs on the board hold.

    Every other call goes to `objects` unchanged (attributes too, such as a
    store's ``sweep_temporary``). `held` lists what was left out, in the
    order seen.
    """

    def __init__(self, objects: IObjectStore, jobs: Mapping[str, BoardJob]) -> None:
        self.objects = objects
        self.jobs = jobs
        self.held: list[HeldMarker] = []

    def __repr__(self) -> str:
        return f"JobHeldStore({self.objects!r}, {len(self.jobs)} job(s) on the board)"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.objects, name)

    def put(self, key: str, data: bytes | memoryview) -> None:
        self.objects.put(key, data)

    def get(self, key: str) -> bytes:
        return self.objects.get(key)

    def head(self, key: str) -> ObjectInfo:
        return self.objects.head(key)

    def delete(self, key: str) -> None:
        self.objects.delete(key)

    def list(self, prefix: str) -> Iterator[str]:
        keys = list(self.objects.list(prefix))
        return iter([key for key in keys if not self._held(key)])

    def _held(self, key: str) -> bool:
        if not self.jobs or not key.startswith(HELD_PREFIXES):
            return False
        try:
            body = json.loads(self.objects.get(key))
        except (ObjectNotFound, ValueError):
            return False  # gone meanwhile, or not a marker: recover judges it
        job = holding_job(body, self.jobs)
        if job is None:
            return False
        kind = "lease" if key.startswith(LEASE_PREFIX) else "run-journal"
        if all(h.key != key for h in self.held):
            self.held.append(HeldMarker(key, kind, job))
        return True


def without_held(store: Store, jobs: Mapping[str, BoardJob]) -> tuple[Store, JobHeldStore]:
    """`store` as recover should see it: its objects through a `JobHeldStore` view.

    The view is put in place of the objects of a copy of `store`, past
    `Store`'s checks: those already passed for `store` itself, and an
    encrypted store's objects must stay where `Store` finds them sealed (a
    new `Store` around the view would take it for an encrypted store opened
    without its passphrase). Only `list` differs, and only for what jobs
    hold. (A ``keep`` hook in `gc.recover.recover` would make the view
    unnecessary.)
    """
    view = JobHeldStore(store.objects, jobs)
    seen = copy.copy(store)
    object.__setattr__(seen, "objects", view)  # frozen dataclass: see the docstring
    return seen, view


class JobHeldJournal(LocalJournal):
    """A `LocalJournal` whose `scan` leaves out the journals of jobs on the board.

    `held` lists what was left out (``kind`` ``run-journal``, the file name
    as ``key``).
    """

    def __init__(self, directory: str | os.PathLike[str], jobs: Mapping[str, BoardJob]) -> None:
        super().__init__(directory)
        self.jobs = jobs
        self.held: list[HeldMarker] = []

    def scan(self) -> Iterator[JournalFile]:
        for found in super().scan():
            try:
                body = json.loads(found.path.read_text())
            except (OSError, ValueError):
                body = None  # gone meanwhile, or unreadable: recover judges it
            job = holding_job(body, self.jobs)
            if job is None:
                yield found
            else:
                self.held.append(HeldMarker(found.path.name, "run-journal", job))
