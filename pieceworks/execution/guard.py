"""A persistence backend that writes for a job only while its conductor holds the claim.

A conductor paused (SIGSTOP, a stalled VM) for longer than its claim expiry
loses the job to another conductor. When it wakes, its engine would go on:
save the atom it was running, start the next one, and overwrite the state
the new owner persisted, even after that owner reported the result. Every
TaskFlow engine goes through its persistence before each atom starts
(``RUNNING``, ``REVERTING``), with each result and with the flow's final
state, so the claim is checked there: `GuardedPersistence` wraps the shared
backend for one job's engine, asks `still_owner` before each write and
raises `ClaimLost` (without writing) once the claim is someone else's or
nobody's. The engine then stops without running, reverting or recording
anything more; the conductor gives the job up.

The same wrapper masks the failure texts (exception strings, tracebacks,
exception arguments) an engine saves, so that a secret in an error message
never reaches the persistence database, and it hosts the failpoint
``job.manifest-written``: a backup's manifest is durable, its atom's success
not yet saved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from taskflow import states
from taskflow.persistence import models
from taskflow.persistence.base import Backend as PersistenceBackend
from taskflow.persistence.base import Connection
from taskflow.task import Task
from taskflow.types.failure import Failure

from pieceworks.failpoints import failpoint
from pieceworks.protocols import PieceworksError

if TYPE_CHECKING:
    from taskflow.types.failure import _FailureDict

__all__ = ["ClaimLost", "GuardedPersistence", "JobCancelled", "mask_failure"]

log = logging.getLogger(__name__)

#: Seconds (of monotonic time, which a paused process also counts) a positive
#: claim check is trusted before the next write checks again.
CHECK_VALID_SECONDS: Final = 0.5

#: Seconds between two asks of a jobboard that could not confirm a claim (see `patience`).
RETRY_EVERY: Final = 0.5

#: Masks a text (secrets replaced); the identity when nothing is to be masked.
Masker = Callable[[str], str]


class ClaimLost(PieceworksError):
    """This conductor no longer holds the job's claim: it must not write or run anything more."""


class JobCancelled(PieceworksError):
    """Someone cancelled the job (``pieceworks jobs cancel``): no further atom starts."""


def mask_failure(failure: Failure, mask: Masker) -> Failure:
    """`failure` with its texts and arguments passed through `mask` (causes too)."""

    def clean(data: _FailureDict) -> _FailureDict:
        out = data.copy()
        out["exception_str"] = mask(data["exception_str"] or "")
        traceback = data.get("traceback_str")
        out["traceback_str"] = mask(traceback) if traceback else traceback
        out["exc_args"] = tuple(
            mask(a) if isinstance(a, str) else mask(repr(a)) for a in data.get("exc_args") or ()
        )
        out["causes"] = [clean(c) for c in data.get("causes") or ()]
        return out

    return Failure.from_dict(clean(failure.to_dict()))


class _GuardedConnection(Connection):
    """Delegates to the real connection; checks the claim and masks before every write."""

    def __init__(self, owner: GuardedPersistence, inner: Connection) -> None:
        self._owner = owner
        self._inner = inner

    @property
    def backend(self) -> PersistenceBackend:
        return self._owner

    def close(self) -> None:
        self._inner.close()

    def validate(self) -> None:
        self._inner.validate()

    def upgrade(self) -> None:
        self._inner.upgrade()

    def clear_all(self) -> None:
        raise PieceworksError("a job's engine never clears the persistence")

    def update_atom_details(self, atom_detail: models.AtomDetail) -> models.AtomDetail:
        self._owner.check()
        self._owner.mask_atom(atom_detail)
        if atom_detail.name.endswith(".write-manifest") and atom_detail.state == states.SUCCESS:
            failpoint("job.manifest-written")
        return self._inner.update_atom_details(atom_detail)

    def update_flow_details(self, flow_detail: models.FlowDetail) -> models.FlowDetail:
        self._owner.check()
        for atom_detail in flow_detail:
            self._owner.mask_atom(atom_detail)
        return self._inner.update_flow_details(flow_detail)

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        self._owner.check()
        return self._inner.save_logbook(book)

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        return self._inner.get_logbook(book_uuid, lazy=lazy)

    def get_logbooks(self, lazy: bool = False) -> Any:
        return self._inner.get_logbooks(lazy=lazy)

    def get_flows_for_book(self, book_uuid: str) -> Any:
        return self._inner.get_flows_for_book(book_uuid)

    def get_flow_details(self, fd_uuid: str, lazy: bool = False) -> models.FlowDetail:
        return self._inner.get_flow_details(fd_uuid, lazy=lazy)

    def get_atom_details(self, ad_uuid: str) -> models.AtomDetail:
        return self._inner.get_atom_details(ad_uuid)

    def get_atoms_for_flow(self, fd_uuid: str) -> Any:
        return self._inner.get_atoms_for_flow(fd_uuid)

    def destroy_logbook(self, book_uuid: str) -> None:
        raise PieceworksError("a job's engine never destroys a logbook")


class GuardedPersistence(PersistenceBackend):
    """The shared backend `inner`, for one job's engine: writes only while `still_owner()`.

    `still_owner` answers whether this conductor holds the job's claim (a
    round trip to the jobboard); a positive answer is trusted for
    `CHECK_VALID_SECONDS` of monotonic time. A failing `still_owner` (the
    board out of reach) is asked again for up to `patience` seconds (the
    conductor gives the claim expiry), the write waiting. Once it answers
    no (or fails past that), `lost` is set and every write raises `ClaimLost`. `mask` cleans the
    failure texts written. `cancelled` answers whether the job was cancelled;
    `guard_tasks` makes every task of the flow raise `JobCancelled` before it
    executes once it was, so the engine reverts the flow as after any failure.
    """

    def __init__(
        self,
        inner: PersistenceBackend,
        still_owner: Callable[[], bool],
        *,
        what: str,
        mask: Masker | None = None,
        cancelled: Callable[[], bool] | None = None,
        patience: float = 0.0,
    ) -> None:
        super().__init__({})
        self._inner = inner
        self._still_owner = still_owner
        self._patience = patience
        self._what = what
        self._mask = mask
        self._cancelled = cancelled
        self._cancel_checked_at: float | None = None
        self.cancelled = False
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self.lost = False
        #: Why the claim counts as lost (set with `lost`): another owner, or a board
        #: that could not be asked (then no one may own it, but this conductor cannot
        #: tell, so it writes nothing more either way).
        self.lost_why = ""

    def get_connection(self) -> Connection:
        return _GuardedConnection(self, self._inner.get_connection())

    def close(self) -> None:
        """Nothing: the shared backend is the conductor's to close."""

    def check(self) -> None:
        """Raise `ClaimLost` unless the claim is (still) this conductor's."""
        with self._lock:
            if not self.lost:
                now = time.monotonic()
                if self._checked_at is not None and now - self._checked_at < CHECK_VALID_SECONDS:
                    return
                owner, why = self._ask()
                if owner:
                    self._checked_at = time.monotonic()
                    return
                self.lost, self.lost_why = True, why
                log.error(
                    "lost the claim on %s (%s): stopping without another write", self._what, why
                )
        raise ClaimLost(f"lost the claim on {self._what}: {self.lost_why}")

    def _ask(self) -> tuple[bool, str]:
        """Whether the claim is still this conductor's, and if not why; a board that cannot
        be asked is asked again (every `RETRY_EVERY` s) for up to `patience` seconds.

        Nothing is written meanwhile, and only the board's own answer lets a write
        through, so waiting is safe: a jobboard blip at the end of a step (a Redis
        restart, a failover) no longer costs the job (given up, then resumed after
        the claim expiry with that step run again).
        """
        deadline = time.monotonic() + self._patience
        failed = 0
        while True:
            try:
                owner = self._still_owner()
            except Exception as exc:
                failed += 1
                if time.monotonic() + RETRY_EVERY > deadline:
                    log.warning("cannot check the claim on %s: %s", self._what, exc)
                    return False, f"the jobboard could not confirm it: {exc}"
                if failed == 1:
                    log.warning(
                        "cannot check the claim on %s: %s; asking again for up to %g s,"
                        " writing nothing meanwhile",
                        self._what,
                        exc,
                        self._patience,
                    )
                time.sleep(RETRY_EVERY)
                continue
            if failed:
                log.info(
                    "the jobboard confirmed the claim on %s again after %d failed attempt%s",
                    self._what,
                    failed,
                    "" if failed == 1 else "s",
                )
            return owner, "it is no longer this conductor's (expired, or another claimed it)"

    def check_cancel(self) -> None:
        """Raise `JobCancelled` if the job was cancelled (asked at most every 0.5 s)."""
        if self._cancelled is None:
            return
        now = time.monotonic()
        if not self.cancelled and (
            self._cancel_checked_at is None or now - self._cancel_checked_at >= CHECK_VALID_SECONDS
        ):
            self._cancel_checked_at = now
            self.cancelled = self._cancelled()
        if self.cancelled:
            raise JobCancelled(f"{self._what} was cancelled: no further step starts")

    def guard_tasks(self, tasks: Iterable[Task]) -> None:
        """Make each of `tasks` call `check_cancel` before it executes."""
        for one in tasks:
            execute = one.execute

            def checked(*args: Any, _original: Any = execute, **kwargs: Any) -> Any:
                self.check_cancel()
                return _original(*args, **kwargs)

            setattr(one, "execute", checked)  # noqa: B010 (an instance attribute, by design)

    def mask_atom(self, atom_detail: models.AtomDetail) -> None:
        """Mask the failures `atom_detail` carries (in place)."""
        if self._mask is None:
            return
        if atom_detail.failure is not None:
            atom_detail.failure = mask_failure(atom_detail.failure, self._mask)
        if atom_detail.revert_failure is not None:
            atom_detail.revert_failure = mask_failure(atom_detail.revert_failure, self._mask)
