"""A long-lived conductor removes finished logbooks after its persistence backend comes back.

The conductor reaches PostgreSQL through a `TcpGate` that the test shuts
(an outage) and opens again. A conductor used to try removing finished
logbooks at its start and then only after a job it consumed: an attempt
that failed while PostgreSQL was away was not retried, and an idle
conductor never removed them until it restarted. Now it retries with
backoff and logs the outage once and the recovery once, not each attempt.
Real Redis, PostgreSQL and conductor process; fails (never skips) without them.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from taskflow import exceptions

from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution import post_backup, wait_for
from pieceworks.execution.board import connected_board, jobboard_conf
from pieceworks.execution.janitor import LogbookJanitor, cleanup_period, describe_persistence
from pieceworks.execution.jobs import update_book_meta
from tests.execution.support import CHUNK, PERSISTENCE, Board, make_volume, poll, slow_config
from tests.execution.tcp_gate import TcpGate

CANNOT = "cannot remove finished logbooks from"
AGAIN = "finished logbooks removed from"


@pytest.fixture
def database() -> Iterator[str]:
    """A PostgreSQL database of this test's own (dropped after): a conductor removing
    logbooks finished 2 s ago must not remove those of the tests running beside it."""
    name = f"pw_janitor_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(
        PERSISTENCE.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _finished_long_ago(board: Board, url: str) -> str:
    """A job posted, claimed and consumed by the test, its logbook finished an hour ago."""
    posted = post_backup(board.url, url, "lab", "lab", {"volume_id": "vol-1"})
    with (
        open_persistence(url) as persistence,
        connected_board("test-conductor", jobboard_conf(board.url), persistence) as jobboard,
    ):
        job = next(j for j in jobboard.iterjobs(ensure_fresh=True) if j.uuid == posted.job_uuid)
        jobboard.claim(job, "test-conductor")
        jobboard.consume(job, "test-conductor")
        update_book_meta(persistence, posted.book_uuid, finished=time.time() - 3600)
    return posted.book_uuid


def _exists(url: str, book_uuid: str) -> bool:
    with (
        open_persistence(url) as persistence,
        contextlib.closing(persistence.get_connection()) as conn,
    ):
        try:
            conn.get_logbook(book_uuid, lazy=True)
        except exceptions.NotFound:
            return False
        return True


def test_an_idle_conductor_removes_finished_logbooks_once_persistence_is_back(
    board: Board, database: str
) -> None:
    url = PERSISTENCE.rsplit("/", 1)[0] + f"/{database}"
    config = board.config("host")  # no backends: the conductor claims none of our jobs
    config.write_text(f"[jobs]\nkeep_finished = 2\n{config.read_text()}")
    with TcpGate(5432) as gate:
        gated = f"postgresql://postgres@127.0.0.1:{gate.port}/{database}"
        proc, _ = board.conductor("idle", config=config, persistence=gated)
        poll("the conductor to start", lambda: "conductor idle on" in board.log("idle"), timeout=60)
        gate.shut()
        poll("a removal to fail", lambda: CANNOT in board.log("idle"), timeout=30)
        book = _finished_long_ago(board, url)
        time.sleep(8)  # attempts at about 1, 2 and 4 s after the first failure: all fail
        assert _exists(url, book)
        gate.open()
        poll("the logbook to be removed", lambda: not _exists(url, book), timeout=30)
        poll("the recovery line", lambda: AGAIN in board.log("idle"), timeout=10)
        time.sleep(3)  # later attempts, on connections pooled before the outage, work too
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, board.log("idle")
    text = board.log("idle")
    assert text.count(CANNOT) == 1, text  # one line per transition, not per attempt
    assert text.count(AGAIN) == 1, text
    assert f"{CANNOT} postgresql://127.0.0.1:{gate.port}/{database}:" in text
    recovered = next(line for line in text.splitlines() if AGAIN in line)
    assert "(1 removed) after" in recovered and "failed attempts" in recovered, recovered
    assert "Traceback" not in text  # the reason in one line; a traceback only at debug level


def test_the_janitor_backs_off_and_counts_failures_in_a_row() -> None:
    """Against a PostgreSQL port nothing answers: delays double from the first to the cap."""
    with TcpGate(5432) as gate:
        url = PERSISTENCE.replace(":5432/", f":{gate.port}/")
        with open_persistence(url) as persistence:
            gate.shut()
            janitor = LogbookJanitor(persistence, 3600, period=60, retry_first=5, retry_max=20)
            delays = [janitor.run_once() for _ in range(4)]
            assert delays == [5, 10, 20, 20]
            assert janitor.failures == 4
            gate.open()
            assert janitor.run_once() == 60
            assert janitor.failures == 0


@pytest.mark.parametrize(("keep", "period"), [(86400, 60.0), (60, 30.0), (2, 1.0), (0.5, 1.0)])
def test_the_period_is_a_minute_or_half_the_keep(keep: float, period: float) -> None:
    assert cleanup_period(keep) == period


def test_the_persistence_is_named_without_its_credentials() -> None:
    url = "postgresql://pw:s3cret@db.example:5433/jobs"
    assert describe_persistence(url) == "postgresql://db.example:5433/jobs"
    assert describe_persistence("sqlite:////var/lib/pw/jobs.db") == "sqlite:////var/lib/pw/jobs.db"


def test_a_logbook_whose_finished_mark_failed_is_marked_and_removed_later(
    board: Board, database: str, tmp_path: Path
) -> None:
    """PostgreSQL away just when the job was consumed (held there by failpoint job.consumed):
    the mark failed and the logbook, never marked finished, was never removed by anyone."""
    url = PERSISTENCE.rsplit("/", 1)[0] + f"/{database}"
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = slow_config(board, tmp_path, delay="0")
    config.write_text(f"[jobs]\nkeep_finished = 2\n{config.read_text()}")
    job = post_backup(board.url, url, "lab", "lab", {"volume_id": "vol-1", "chunk_size": CHUNK})
    with TcpGate(5432) as gate:
        gated = f"postgresql://postgres@127.0.0.1:{gate.port}/{database}"
        proc, _ = board.conductor(
            "marker",
            config=config,
            persistence=gated,
            env={"PIECEWORKS_FAILPOINTS": "job.consumed=sleep:4000"},
        )
        wait_for(board.url, url, job, timeout=60)  # consumed: the conductor now sleeps 4 s
        gate.shut()
        poll(
            "the mark to fail",
            lambda: "could not mark job" in board.log("marker"),
            timeout=30,
        )
        assert _exists(url, job.book_uuid)
        gate.open()
        poll("the logbook to be removed", lambda: not _exists(url, job.book_uuid), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, board.log("marker")
    text = board.log("marker")
    assert f"could not mark job {job.job_uuid} finished: " in text and "marked later" in text
    assert f"marked the logbook {job.book_uuid} finished (its mark had failed)" in text, text
