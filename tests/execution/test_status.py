"""`jobs show`/`list`/`watch` call a job ended only once its flow's outcome is final.

Against the real Redis and PostgreSQL, with no conductor: each test plays a
conductor's part itself (claim, save the flow detail's state, consume), so
the board and the persistence hold exactly the state under test.

The flaky ``jobs watch`` exit 1 (``job ...: RUNNING`` after every step had
succeeded) came from `job_status` reading the logbook *before* the board:
the flow detail read ``RUNNING``, the conductor then saved ``SUCCESS`` and
consumed the job, the board read said "gone", and any state off the board
counted as final. Now the board is read first, and only a final flow state
(``SUCCESS``, ``FAILURE``, ``REVERTED``) ends a job.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskflow.jobs.base import Job, JobBoard
from taskflow.persistence import models

from pieceworks import failpoints
from pieceworks.cli.commands.jobs import WATCH_SETTLE
from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution import JobFailed, PostedJob, wait_for
from pieceworks.execution.board import connected_board, jobboard_conf
from pieceworks.execution.status import (
    FINAL_STATES,
    JobStatus,
    _status,
    job_status,
    list_jobs,
)
from tests.execution.support import PERSISTENCE, REPO, Board
from tests.execution.test_cli_jobs import jobs_config, pw

#: Flow states that are not an outcome: a job off the board in one has not ended.
NOT_FINAL = ("PENDING", "RUNNING", "REVERTING", "RESUMING", "SUSPENDING", "SUSPENDED")


@contextlib.contextmanager
def _claimed(board: Board, posted: PostedJob) -> Iterator[tuple[JobBoard, Job]]:
    """`posted` claimed by this test, as a conductor would claim it."""
    with (
        open_persistence(PERSISTENCE) as persistence,
        connected_board("test-conductor", jobboard_conf(board.url), persistence) as jobboard,
    ):
        job = next(j for j in jobboard.iterjobs(ensure_fresh=True) if j.uuid == posted.job_uuid)
        jobboard.claim(job, "test-conductor")
        yield jobboard, job


def _save_flow_state(posted: PostedJob, state: str) -> None:
    """Save `state` as the job's flow detail state, as the engine does."""
    with (
        open_persistence(PERSISTENCE) as persistence,
        contextlib.closing(persistence.get_connection()) as conn,
    ):
        detail = conn.get_flow_details(posted.flow_uuid, lazy=True)
        detail.state = state
        conn.update_flow_details(detail)


def _left_the_board(board: Board, posted: PostedJob, flow_state: str) -> None:
    """Claim the job, save `flow_state`, consume it: gone from the board, flow in that state."""
    with _claimed(board, posted) as (jobboard, job):
        _save_flow_state(posted, flow_state)
        jobboard.consume(job, "test-conductor")


def test_a_job_off_the_board_with_a_flow_not_ended_has_not_ended(board: Board) -> None:
    """The state the old `done` mistook for an outcome: off the board, flow RUNNING (or PENDING,
    REVERTING...). Not done, `unfinished`; once the outcome is saved, done with it."""
    for flow_state in NOT_FINAL:
        posted = board.post_backup("lab", "lab", volume_id="vol-1")
        _left_the_board(board, posted, flow_state)
        status = job_status(board.url, PERSISTENCE, posted.job_uuid)
        assert status.state == flow_state
        assert not status.done, f"a job whose flow reads {flow_state} was called ended"
        assert status.unfinished
        listed = [s for s in list_jobs(board.url, PERSISTENCE) if s.job_id == posted.job_uuid]
        assert [(s.state, s.done) for s in listed] == [(flow_state, False)]
    for flow_state in FINAL_STATES:
        posted = board.post_backup("lab", "lab", volume_id="vol-1")
        _left_the_board(board, posted, flow_state)
        status = job_status(board.url, PERSISTENCE, posted.job_uuid)
        assert (status.state, status.done, status.unfinished) == (flow_state, True, False)


def test_a_job_on_the_board_has_not_ended_whatever_its_flow_reads(board: Board) -> None:
    """UNCLAIMED, then CLAIMED with its flow already SUCCESS (saved, not yet consumed)."""
    posted = board.post_backup("lab", "lab", volume_id="vol-1")
    status = job_status(board.url, PERSISTENCE, posted.job_uuid)
    assert (status.state, status.done, status.unfinished) == ("UNCLAIMED", False, False)
    with _claimed(board, posted):
        _save_flow_state(posted, "SUCCESS")
        status = job_status(board.url, PERSISTENCE, posted.job_uuid)
        assert (status.state, status.owner) == ("CLAIMED", "test-conductor")
        assert not status.done and not status.unfinished


def test_the_board_is_read_before_the_logbook(board: Board) -> None:
    """The race, held open by failpoint ``status.board-read`` (board read, logbook not yet):
    the conductor saves SUCCESS and consumes the job in that window. The status taken then says
    CLAIMED (not ended), never the flow's RUNNING-read-before as an outcome; the next says
    SUCCESS."""
    posted = board.post_backup("lab", "lab", volume_id="vol-1")
    seen: list[JobStatus] = []
    failpoints.configure("status.board-read=sleep:3000")
    try:
        with _claimed(board, posted) as (jobboard, job):
            _save_flow_state(posted, "RUNNING")
            reader = threading.Thread(
                target=lambda: seen.append(job_status(board.url, PERSISTENCE, posted.job_uuid))
            )
            reader.start()
            deadline = time.monotonic() + 60
            while failpoints._hits.get("status.board-read", 0) < 1:  # the board state is read
                assert time.monotonic() < deadline, "job_status never reached the failpoint"
                time.sleep(0.01)
            _save_flow_state(posted, "SUCCESS")
            jobboard.consume(job, "test-conductor")
            reader.join(timeout=60)
    finally:
        failpoints.configure("")
    assert len(seen) == 1
    assert (seen[0].state, seen[0].done) == ("CLAIMED", False)
    after = job_status(board.url, PERSISTENCE, posted.job_uuid)
    assert (after.state, after.done) == ("SUCCESS", True)


def test_a_job_listed_then_consumed_before_its_state_is_read_reports_its_outcome(
    board: Board,
) -> None:
    """TaskFlow answers COMPLETE for a job listed, then consumed: the flow's outcome is shown."""
    posted = board.post_backup("lab", "lab", volume_id="vol-1")
    with _claimed(board, posted) as (jobboard, job):
        _save_flow_state(posted, "FAILURE")
        jobboard.consume(job, "test-conductor")
        assert str(job.state) == "COMPLETE"
        with open_persistence(PERSISTENCE) as persistence:
            status = _status(persistence, posted.book_uuid, job)
    assert (status.state, status.owner, status.done) == ("FAILURE", None, True)


def test_watch_gives_up_on_a_job_that_left_the_board_unfinished(
    board: Board, tmp_path: Path
) -> None:
    """No --timeout, flow stuck RUNNING off the board: exit 1 (``job-unfinished``) after
    WATCH_SETTLE seconds, never a wait without end; not before (it is not an outcome)."""
    config = jobs_config(board, tmp_path)
    posted = board.post_backup("lab", "lab", volume_id="vol-1")
    _left_the_board(board, posted, "RUNNING")
    started = time.monotonic()
    done = pw(board, config, "jobs", "watch", posted.job_uuid, "--json")
    waited = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert waited >= WATCH_SETTLE
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert error["reference"] == "job-unfinished"
    assert f"job {posted.job_uuid} left the board with its flow RUNNING" in error["message"]
    assert json.loads(done.stdout)["state"] == "RUNNING"
    plain = pw(board, config, "jobs", "watch", posted.job_uuid, "--timeout", "1")
    assert plain.returncode == 124, "--timeout shorter than the settling time still applies"


def test_watch_waits_on_through_a_non_final_state_off_the_board(
    board: Board, tmp_path: Path
) -> None:
    """Off the board with its flow RUNNING, then SUCCESS saved: watch exits 0 with SUCCESS."""
    config = jobs_config(board, tmp_path)
    posted = board.post_backup("lab", "lab", volume_id="vol-1")
    _left_the_board(board, posted, "RUNNING")
    command = [sys.executable, "-m", "pieceworks.cli", "--config", str(config)]
    watch = subprocess.Popen(
        [*command, "jobs", "watch", posted.job_uuid],
        cwd=REPO,
        env=board.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # watch has seen the job: RUNNING, and goes on
        assert f"job {posted.job_uuid} (" in first and first.rstrip().endswith(": RUNNING")
        _save_flow_state(posted, "SUCCESS")
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert f"job {posted.job_uuid}: SUCCESS" in out


@pytest.mark.parametrize("flow_state", ["RUNNING", "UNKNOWN"])
def test_show_reports_an_unfinished_job_as_it_stands(
    board: Board, tmp_path: Path, flow_state: str
) -> None:
    """`jobs show` exits 0 with the flow's state (UNKNOWN: no state saved at all)."""
    config = jobs_config(board, tmp_path)
    posted = board.post_backup("lab", "lab", volume_id="vol-1")
    _left_the_board(board, posted, "RUNNING" if flow_state == "RUNNING" else "")
    shown = pw(board, config, "jobs", "show", posted.job_uuid, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == flow_state


def test_wait_for_a_success_without_a_result_is_a_failed_job_not_a_type_error(
    board: Board,
) -> None:
    """A flow saved SUCCESS whose result step holds no result (two conductors ran it at once,
    before claims went by process) fails the wait naming the step; it was a TypeError."""
    posted = board.post_backup("lab", "lab", volume_id="vol-1")
    with (
        open_persistence(PERSISTENCE) as persistence,
        contextlib.closing(persistence.get_connection()) as conn,
    ):
        detail = conn.get_flow_details(posted.flow_uuid)
        atom = models.TaskDetail(posted.result_atom, uuid=str(uuid.uuid4()))
        atom.state = "SUCCESS"  # and no result
        detail.add(atom)
        conn.update_flow_details(detail)
    _left_the_board(board, posted, "SUCCESS")
    with pytest.raises(JobFailed, match=f"has no result from {posted.result_atom}"):
        wait_for(board.url, PERSISTENCE, posted, timeout=10)
