"""Jobboards: TaskFlow's Redis board, configured from a URL, with claims that die with their owner.

A dead conductor must let go of its jobs. TaskFlow's Redis board claims
without expiry by default (the owner key lives forever) and its conductors
call ``claim(job, who)`` without one, so a conductor killed mid-job would
hold its job forever. `LeasedRedisJobBoard` claims with an expiry
(``claim_expiry`` seconds, default 30) and renews every claim it holds from
a background thread; when the process dies, renewals stop, the owner key
expires, and another conductor claims the job and resumes it.

Claims are made under a per-process owner (`claim_owner`: the conductor's
``--name`` plus host, pid and a random run token), never under the bare
name: two live conductors started with one ``--name`` (a careless command
line, a duplicated service unit) would otherwise each take the other's
claim for its own (TaskFlow compares owner strings), renew it and, once a
stalled one's claim had lapsed to the other, both run one job at once. A
conductor restarted under its old name is another process with another
owner: its dead predecessor's claim expires and it then claims the job and
resumes it like any other conductor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from taskflow.exceptions import JobFailure, NotFound, UnclaimableJob
from taskflow.jobs import backends as jobs_backends
from taskflow.jobs.backends.impl_redis import RedisJob, RedisJobBoard
from taskflow.jobs.base import Job, JobBoard
from taskflow.persistence.base import Backend as PersistenceBackend

from pieceworks.execution.reachability import Reachability
from pieceworks.protocols import ConfigError, PieceworksError

__all__ = [
    "DEFAULT_CLAIM_EXPIRY",
    "JobboardConf",
    "JobboardUnavailable",
    "LeasedRedisJobBoard",
    "connected_board",
    "describe_board",
    "check_board",
    "claim_owner",
    "jobboard_conf",
]

log = logging.getLogger(__name__)

#: Seconds a claim outlives its conductor (renewed every third of it).
DEFAULT_CLAIM_EXPIRY: Final = 30.0

#: A jobboard configuration: ``redis://host:port/namespace[?claim_expiry=S]``
#: or TaskFlow's dict form (``{"board": "redis", "host": ..., ...}``).
JobboardConf = Mapping[str, Any] | str


def jobboard_conf(conf: JobboardConf) -> dict[str, Any]:
    """TaskFlow's dict form of a jobboard configuration.

    ``redis://[:password@]host[:port]/namespace[?claim_expiry=S&db=N]``
    becomes ``{"board": "redis", "host", "port", "namespace", ...}``; a dict
    is copied as is (``board`` defaults to ``redis``).
    """
    if not isinstance(conf, str):
        out = dict(conf)
        out.setdefault("board", "redis")
        return out
    url = urllib.parse.urlsplit(conf)
    if url.scheme != "redis":
        raise ConfigError(
            f"unsupported jobboard {url.scheme or conf!r}: use redis://host:port/namespace"
        )
    out = {"board": "redis", "host": url.hostname or "127.0.0.1", "port": url.port or 6379}
    namespace = url.path.strip("/")
    if namespace:
        out["namespace"] = namespace
    if url.password:
        out["password"] = urllib.parse.unquote(url.password)
    if url.username:
        out["username"] = urllib.parse.unquote(url.username)
    for key, value in urllib.parse.parse_qsl(url.query):
        out[key] = value
    return out


def describe_board(conf: Mapping[str, Any]) -> str:
    """The board's address for logs: never its password."""
    return (
        f"{conf.get('board')}://{conf.get('host')}:{conf.get('port')}/{conf.get('namespace', '')}"
    )


def claim_owner(name: str) -> str:
    """The owner this process's claims go by: `name` made unique to this process.

    ``NAME (host HOST, pid PID, run TOKEN)``: `jobs list`/`jobs show` show it
    as the job's owner, so an operator sees which conductor process runs a
    job; the random token (6 hex digits) keeps two runs apart even where
    host and pid repeat (a restarted container is pid 1 again). Two
    processes never share an owner, so one conductor never takes another's
    claim for its own, whatever their ``--name`` (see the module docstring).
    """
    return f"{name} (host {socket.gethostname()}, pid {os.getpid()}, run {secrets.token_hex(3)})"


class JobboardUnavailable(PieceworksError):
    """The jobboard's server cannot be reached (refused, unknown host, wrong password)."""


def check_board(conf: Mapping[str, Any], timeout: float = 5.0) -> None:
    """Reach the Redis server of `conf` once; `JobboardUnavailable` naming it if it fails.

    TaskFlow's own failure is a ``JobFailure`` whose text embeds a redis
    traceback summary: an unexpected error to a user who mistyped a port.
    """
    import redis  # noqa: PLC0415

    client = redis.Redis(
        host=conf.get("host", "127.0.0.1"),
        port=int(conf.get("port", 6379)),
        db=int(conf.get("db", 0)),
        username=conf.get("username"),
        password=conf.get("password"),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise JobboardUnavailable(
            f"cannot reach the jobboard {describe_board(conf)}: {exc}"
        ) from None
    finally:
        client.close()


@contextlib.contextmanager
def connected_board(
    name: str, conf: Mapping[str, Any], persistence: PersistenceBackend
) -> Iterator[JobBoard]:
    """A connected plain TaskFlow board (for posting and watching, not claiming)."""
    board = jobs_backends.fetch(name, dict(conf), persistence=persistence)
    board.connect()
    try:
        yield board
    finally:
        board.close()


class LeasedRedisJobBoard(RedisJobBoard):
    """TaskFlow's Redis jobboard whose claims die with their claimer.

    Every claim is made with an expiry of `claim_expiry` seconds and renewed
    every third of it by a daemon thread for as long as this process holds
    it (until consumed, abandoned or trashed). A killed conductor stops
    renewing; its claim expires and the job can be claimed again. Before
    renewing, the thread checks that the claim is still this owner's: one
    that another claimer took over (this process stalled for longer than the
    expiry) is given up and logged, never renewed on another owner's behalf;
    one that lapsed with nobody else claiming it is claimed again (`holds`).
    A claim held under this claimer's name that this process did not make
    is never claimed, which would renew it: it is left to expire. (With
    `claim_owner` names, which conductors use, no other process claims
    under this one's name; a caller claiming under a bare shared name is
    still kept from reviving a dead process's claim.)

    `on_claim(job, who)` is called after each claim; `before_claim(job)`
    before, and may refuse the claim by raising `UnclaimableJob`;
    `on_listing(unclaimed)` after each listing of the board.

    With `reachability`, a board that cannot be reached (TaskFlow's
    ``JobFailure``) is reported to it rather than raised by a listing, a
    claim or a renewal: the listing is empty, the claim refused
    (`UnclaimableJob`), the renewal retried next round; the conductor's
    poll loop then logs nothing itself (it logged a traceback per poll).
    Each listing that works tells it the board answers again.
    """

    def __init__(
        self,
        name: str,
        conf: dict[str, Any],
        persistence: PersistenceBackend | None = None,
        *,
        claim_expiry: float = DEFAULT_CLAIM_EXPIRY,
        on_claim: Callable[[Job, str], None] | None = None,
        before_claim: Callable[[Job], None] | None = None,
        on_listing: Callable[[int], None] | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        if claim_expiry <= 0:
            raise PieceworksError(f"claim expiry must be positive, not {claim_expiry}")
        super().__init__(name, conf, persistence=persistence)
        self.claim_expiry = claim_expiry
        self._on_claim = on_claim
        self._before_claim = before_claim
        self._on_listing = on_listing
        self.reachability = reachability
        self._held: dict[str, tuple[Job, str]] = {}
        self._held_lock = threading.Lock()
        self._stopping = threading.Event()
        self._renewer: threading.Thread | None = None

    def claim(self, job: Job, who: str, expiry: float | None = None) -> None:
        """Claim `job` for `who`, expiring unless renewed (by this board).

        `before_claim` (if given) may refuse by raising `UnclaimableJob`:
        the job stays on the board, unclaimed, for another claimer.
        """
        if self._before_claim is not None:
            self._before_claim(job)
        try:
            self._claim_checked(job, who, expiry)
        except UnclaimableJob:
            raise  # a JobFailure too, but the board answered: another owner holds the job
        except JobFailure as exc:
            if self.reachability is None:
                raise
            self.reachability.failed(exc)
            why = "the jobboard is unreachable"
            raise UnclaimableJob(f"job {job.uuid} not claimed: {why}") from None
        if self._on_claim is not None:
            self._on_claim(job, who)

    def _claim_checked(self, job: Job, who: str, expiry: float | None) -> None:
        with self._held_lock:
            ours = job.uuid in self._held
        if not ours and self.owner_of(job) == who:
            # TaskFlow's claim script renews a claim held under the same name and only
            # then reports "already claimed": a conductor restarted under its old name
            # after a crash (SIGKILL, a host reboot) kept its dead predecessor's claim
            # alive at every poll, and the job was never resumed. Leave it to expire.
            raise UnclaimableJob(
                f"job {job.uuid} is claimed under this conductor's name {who!r} by another"
                " process (an earlier run of this conductor?): left until that claim expires"
            )
        self._claim(job, who, expiry)

    def _claim(self, job: Job, who: str, expiry: float | None = None) -> None:
        super().claim(job, who, expiry=self.claim_expiry if expiry is None else expiry)
        with self._held_lock:
            self._held[job.uuid] = (job, who)
            if self._renewer is None or not self._renewer.is_alive():
                self._stopping.clear()
                self._renewer = threading.Thread(
                    target=self._renew_claims, name="pieceworks-claim-renewer", daemon=True
                )
                self._renewer.start()

    def iterjobs(self, only_unclaimed: bool = False, ensure_fresh: bool = False) -> Iterator[Job]:
        """The jobs on the board; `on_listing` (if given) learns how many are unclaimed.

        With `reachability`, none while the board cannot be reached (see the class).
        """
        try:
            jobs = list(super().iterjobs(only_unclaimed=only_unclaimed, ensure_fresh=ensure_fresh))
            if self._on_listing is not None:
                self._on_listing(sum(1 for j in jobs if self.owner_of(j) is None))
        except JobFailure as exc:
            if self.reachability is None:
                raise
            self.reachability.failed(exc)
            return iter(())
        if self.reachability is not None:
            self.reachability.succeeded()
        return iter(jobs)

    @property
    def redis_client(self) -> Any:
        """TaskFlow's Redis client of this board (connected between `connect` and `close`)."""
        return getattr(self, "_client")  # noqa: B009 (not in TaskFlow's stubs)

    def owner_of(self, job: Job) -> str | None:
        """Who holds `job`'s claim now: ``None`` once it expired or the job is gone."""
        try:
            return self.find_owner(job)
        except TypeError:  # TaskFlow decodes a missing owner key (None) and fails
            return None

    def holds(self, job: Job, who: str) -> bool:
        """Whether `who` holds `job`'s claim, taking it back if it lapsed unowned.

        A claim can lapse without anyone else claiming it (a conductor starved
        of CPU for longer than the expiry): then it is claimed again at once,
        atomically (a claim succeeds only on an unowned job still on the
        board). False when another owner has it, or the job is gone.
        """
        owner = self.owner_of(job)
        if owner == who:
            return True
        if owner is not None:
            return False
        try:
            self._claim(job, who)
        except UnclaimableJob:
            return self.owner_of(job) == who  # another thread of ours may have just taken it
        except NotFound:
            return False
        log.warning("the claim on job %s had lapsed unowned: %s claimed it again", job.uuid, who)
        return True

    def consume(self, job: Job, who: str) -> None:
        """Consume `job` and stop renewing its claim."""
        try:
            super().consume(job, who)
        finally:
            self._forget(job)

    def abandon(self, job: Job, who: str) -> None:
        """Abandon `job` (others may claim it at once) and stop renewing its claim."""
        try:
            super().abandon(job, who)
        finally:
            self._forget(job)

    def trash(self, job: Job, who: str) -> None:
        """Trash `job` and stop renewing its claim."""
        try:
            super().trash(job, who)
        finally:
            self._forget(job)

    def close(self) -> None:
        """Stop renewing (claims still held then expire) and disconnect."""
        self._stopping.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=5)
        super().close()

    def _forget(self, job: Job) -> None:
        with self._held_lock:
            self._held.pop(job.uuid, None)

    def _renew_claims(self) -> None:
        while not self._stopping.wait(self.claim_expiry / 3):
            with self._held_lock:
                held = list(self._held.values())
            for job, who in held:
                try:
                    if not self.holds(job, who):
                        owner = self.owner_of(job)
                        log.error("lost the claim on job %s (owner now %s)", job.uuid, owner)
                        self._forget(job)
                        continue
                    if isinstance(job, RedisJob):
                        job.extend_expiry(self.claim_expiry)
                except JobFailure as exc:
                    if self.reachability is None:
                        log.warning("could not renew the claim on job %s: %s", job.uuid, exc)
                    else:
                        self.reachability.failed(exc)
                except Exception:  # keep renewing the others; retry next round
                    log.warning("could not renew the claim on job %s", job.uuid, exc_info=True)
