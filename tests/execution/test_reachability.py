"""A conductor whose Redis goes away logs the outage as transitions, not a traceback per poll.

A tester saw about 400 traceback lines per 15 s of Redis outage (TaskFlow's
conductor logs each failed poll with its traceback). Now: one warning
naming the board and the error, a reminder at most every `remind_every`
seconds, one line when it answers again, and the job posted after the
outage is run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from taskflow.exceptions import JobFailure

from pieceworks.execution import wait_for
from pieceworks.execution.reachability import Reachability, failure_reason
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    REDIS_PORT,
    Board,
    make_volume,
    poll,
    spec,
)
from tests.execution.tcp_gate import TcpGate


def _refused() -> JobFailure:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as cause:
            raise JobFailure("Failed to connect to redis\n  details on the next line") from cause
    except JobFailure as exc:
        return exc


def test_the_reason_is_one_line_with_its_cause() -> None:
    expected = "Failed to connect to redis ([Errno 111] Connection refused)"
    assert failure_reason(_refused()) == expected


def test_an_outage_is_one_warning_reminders_then_one_line_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    seen = Reachability("redis://h:1/ns", "c1", remind_every=60, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="pieceworks.execution.reachability")
    seen.succeeded()
    assert caplog.records == []
    for _ in range(200):  # 100 s of polls every half second
        seen.failed(_refused())
        now[0] += 0.5
    seen.succeeded()
    seen.succeeded()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "c1: the jobboard redis://h:1/ns is unreachable: Failed to connect to redis"
        " ([Errno 111] Connection refused); claiming nothing until it answers",
        "c1: the jobboard redis://h:1/ns is still unreachable after 60 s (121 failed polls):"
        " Failed to connect to redis ([Errno 111] Connection refused)",
        "c1: the jobboard redis://h:1/ns is reachable again after 100.0 s (200 failed polls)",
    ]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and tracebacks[0].levelno == logging.INFO
    assert seen.down_since is None


def test_a_conductor_logs_a_redis_outage_in_bounded_lines_and_recovers(
    board: Board, tmp_path: Path
) -> None:
    """Redis (behind a relay) down for 6 s: a few lines, no poll tracebacks; then a job runs."""
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = board.config(
        "host",
        backends={"lab": spec("lab", "file", path=str(tmp_path / "volumes"))},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    with TcpGate(REDIS_PORT) as gate:
        url = f"redis://127.0.0.1:{gate.port}/{board.namespace}"
        proc, _ = board.conductor("c1", "--jobboard", url, "--max-dispatches", "1", config=config)
        poll("the conductor to start", lambda: "conductor c1 on" in board.log("c1"), 30)
        time.sleep(1)
        before = len(board.log("c1").splitlines())
        gate.shut()
        poll("the outage warning", lambda: "is unreachable" in board.log("c1"), 30)
        time.sleep(6)
        gate.open()
        poll("the recovery line", lambda: "is reachable again" in board.log("c1"), 30)
        outage = board.log("c1").splitlines()[before:]
        job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
        result = wait_for(board.url, PERSISTENCE, job, timeout=30)
        assert proc.wait(timeout=30) == 0
    assert result["chunks_total"] == 4
    headed = [line for line in outage if line.startswith("pieceworks:")]
    print(f"\n{len(outage)} lines during a 6+ s outage, {len(headed)} log records")
    assert "Transient job board failure" not in "\n".join(outage)
    assert sum("the first failure to reach" in line for line in headed) == 1  # its traceback (-v)
    assert len(outage) <= 150  # that one traceback chain is most of them
    unreachable = [line for line in headed if "is unreachable" in line]
    assert len(unreachable) == 1 and f"redis://127.0.0.1:{gate.port}/" in unreachable[0]
    assert "Failed to connect to redis (" in unreachable[0]
    assert sum("is reachable again" in line for line in headed) == 1
    assert len(headed) <= 4, headed
