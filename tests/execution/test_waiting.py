"""Waiting for a job that does not end: `JobTimeout` from `wait_for` and ``jobs watch``.

Against the real Redis and PostgreSQL, with no conductor: the posted job
stays on the board, so every wait gives up.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode, code_for
from pieceworks.execution import JobTimeout, wait_for
from pieceworks.protocols import PieceworksError, WaitTimedOut
from tests.execution.support import PERSISTENCE, Board, make_volume
from tests.execution.test_cli_jobs import jobs_config, posted, pw


def test_wait_for_a_job_nobody_runs_raises_job_timeout_naming_it(
    board: Board, tmp_path: Path
) -> None:
    """A PieceworksError (and still a TimeoutError) with the job id and the seconds waited."""
    job = board.post_backup("lab", "lab", volume_id="vol-1")
    started = time.monotonic()
    with pytest.raises(JobTimeout) as raised:
        wait_for(board.url, PERSISTENCE, job, timeout=0.5)
    assert time.monotonic() - started < 10
    error = raised.value
    assert isinstance(error, PieceworksError) and isinstance(error, WaitTimedOut)
    assert isinstance(error, TimeoutError)
    assert error.job_id == job.job_uuid
    assert 0.5 <= error.waited_seconds < 10
    assert f"job {job.job_uuid} ({job.name}) has not ended after" in str(error)
    assert f"{error.waited_seconds:.1f} s" in str(error)
    assert code_for(error) == ExitCode.TIMED_OUT
    assert int(ExitCode.TIMED_OUT) == 124


def test_jobs_watch_timeout_exits_124_naming_the_job(board: Board, tmp_path: Path) -> None:
    """``jobs watch --timeout``: exit 124, the job id and the seconds on stderr; --help says so."""
    make_volume(tmp_path / "volumes", "vol-1", 2)
    config = jobs_config(board, tmp_path)
    job = posted(board, config, "backup", "--volume", "vol-1")
    done = pw(board, config, "jobs", "watch", job.job_uuid, "--timeout", "0.5")
    assert done.returncode == 124, done.stderr
    assert f"job {job.job_uuid} ({job.name}) has not ended after" in done.stderr
    assert "UNCLAIMED" in done.stdout
    helped = pw(board, config, "jobs", "watch", "--help")
    assert "124" in helped.stdout and "timed out" in helped.stdout
