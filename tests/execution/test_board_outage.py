"""A jobboard (Redis) out of reach for a moment while a job runs does not cost the job; a
job another conductor holds is not an outage.

The conductor reaches Redis through a `TcpGate` that the test shuts while a
backup's transfer runs and opens again a moment after the transfer ended.
Before each write the conductor checks its claim on the board; a check that
could not reach the board counted as a lost claim at once: the job was
given up (a ``lost`` event) and run again from the interrupted step by the
next conductor once the claim expired. Now the check is asked again, the
write waiting, for up to the claim expiry: the board's own answer decides.
Real Redis, PostgreSQL and conductor process; fails (never skips) without them.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution import wait_for
from pieceworks.execution.board import (
    JobboardUnavailable,
    LeasedRedisJobBoard,
    connected_board,
    describe_board,
    jobboard_conf,
)
from pieceworks.execution.liveness import NameRegistration
from pieceworks.execution.reachability import Reachability
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    REDIS_PORT,
    Board,
    atom_runs,
    events,
    make_volume,
    poll,
    slow_config,
    stored_chunks,
)
from tests.execution.tcp_gate import TcpGate


def test_a_jobboard_blip_at_the_end_of_a_step_does_not_lose_the_job(
    board: Board, tmp_path: Path
) -> None:
    make_volume(tmp_path / "volumes", "vol-1", 48)
    config = slow_config(board, tmp_path)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    with TcpGate(REDIS_PORT) as gate:
        gated = board.url.replace(f":{REDIS_PORT}/", f":{gate.port}/")
        proc, ev = board.conductor(
            "blip", "--claim-expiry", "10", "--max-dispatches", "1", config=config, jobboard=gated
        )
        poll(
            "the transfer to be under way",
            lambda: (
                atom_runs(ev, "transfer-chunks") == 1 and stored_chunks(tmp_path / "store") >= 4
            ),
            timeout=60,
        )
        gate.shut()
        poll(
            "the claim check to fail at the end of the transfer",
            lambda: "cannot check the claim" in board.log("blip"),
            timeout=60,
        )
        time.sleep(1.5)
        gate.open()
        result = wait_for(board.url, PERSISTENCE, job, timeout=60)
        assert proc.wait(timeout=30) == 0, board.log("blip")
    assert result["chunks_total"] == 42
    assert [e["event"] for e in events(ev) if e["event"] != "atom"] == ["claimed", "consumed"]
    assert atom_runs(ev, "transfer-chunks") == 1  # not run again
    assert atom_runs(ev, "write-manifest", "SUCCESS") == 1
    text = board.log("blip")
    assert "confirmed the claim on job" in text and "again after" in text, text
    assert "lost the claim" not in text, text
    proc.send_signal(signal.SIGTERM)  # already gone; harmless


def test_a_job_claimed_by_another_conductor_is_not_a_jobboard_outage(
    board: Board, tmp_path: Path
) -> None:
    """TaskFlow's "already claimed by ..." is a JobFailure (UnclaimableJob): the board answered.
    It was logged as the jobboard being unreachable, with a traceback, at every poll."""
    config = slow_config(board, tmp_path)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    with (
        open_persistence(PERSISTENCE) as persistence,
        connected_board("rival", jobboard_conf(board.url), persistence) as rival,
    ):
        listed = next(j for j in rival.iterjobs(ensure_fresh=True) if j.uuid == job.job_uuid)
        rival.claim(listed, "rival conductor")
        proc, ev = board.conductor("polite", config=config)
        poll("a few polls", lambda: board.log("polite").count("conductor polite on") == 1, 60)
        time.sleep(3)  # about 15 polls of --wait-timeout 0.2, each finding the job claimed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, board.log("polite")
        rival.abandon(listed, "rival conductor")
    text = board.log("polite")
    assert "unreachable" not in text and "Traceback" not in text, text
    assert not events(ev)


def test_registering_the_name_with_the_board_out_of_reach_names_the_board(board: Board) -> None:
    """The jobboard gone between the start-up check and the name's registration: the error
    names the board (it was redis-py's ConnectionError, an unexpected error)."""
    with TcpGate(REDIS_PORT) as gate, open_persistence(PERSISTENCE) as persistence:
        conf = jobboard_conf(board.url.replace(f":{REDIS_PORT}/", f":{gate.port}/"))
        where = describe_board(conf)
        leased = LeasedRedisJobBoard(
            "probe", conf, persistence, reachability=Reachability(where, "probe")
        )
        leased.connect()
        try:
            gate.shut()
            registration = NameRegistration(leased, "probe", "probe (test)", 3.0, print)
            with pytest.raises(JobboardUnavailable) as raised:
                registration.acquire()
        finally:
            leased.close()
    text = str(raised.value)
    assert text.startswith(f"cannot reach {where} to register conductor name 'probe': "), text
