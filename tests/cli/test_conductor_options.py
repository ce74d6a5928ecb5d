"""Every timing option and count of ``conductor`` is checked as it is parsed: a usage error.

``--worker-wait``, ``--worker-lost-after`` and ``--worker-queue-timeout``
were checked in the run function (a ``config-error``, "must be a positive
number of seconds"), ``--wait-timeout`` and ``--claim-expiry`` not at all
(``--wait-timeout 0`` polled the board in a busy loop, ``--claim-expiry
-1`` was passed to the jobboard). Now each is a ``positive_seconds``
option: ``usage-error``, the option named, one message shape, before any
connection is made (no jobboard or broker here: none is reached).
"""

from __future__ import annotations

import json

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.options import non_negative_count
from pieceworks.execution import dispatch
from pieceworks.execution.__main__ import main as execution_main
from pieceworks.execution.conductor import run_conductor
from pieceworks.execution.timings import FIND_TIMEOUT, LOST_AFTER, QUEUE_TIMEOUT
from pieceworks.protocols import ConfigError
from tests.cli.conftest import Call

OPTIONS = (
    "--wait-timeout",
    "--claim-expiry",
    "--worker-wait",
    "--worker-lost-after",
    "--worker-queue-timeout",
)
#: Nowhere reachable: a parse error must come first.
_NOWHERE = ("--jobboard", "redis://127.0.0.1:1/x", "--persistence", "postgresql://127.0.0.1:1/x")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
@pytest.mark.parametrize("option", OPTIONS)
def test_a_timing_that_is_not_a_positive_number_is_a_usage_error(
    call: Call, option: str, value: str
) -> None:
    done = call("conductor", *_NOWHERE, "--transport", "amqp://127.0.0.1:1/", option, value,
                "--json")  # fmt: skip
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert error["message"].startswith(f"pieceworks conductor: argument {option}: "), error
    assert repr(value) in error["message"], error
    assert "seconds" in error["message"] and "hint" not in error, error


def test_the_worker_defaults_are_the_dispatchers(call: Call) -> None:
    """One definition: the help shows the dispatcher's defaults (120 s queue timeout...)."""
    assert dispatch.QUEUE_TIMEOUT is QUEUE_TIMEOUT  # the dispatcher's own default
    done = call("conductor", "--help")
    assert done.code == 0, done
    text = " ".join(done.out.split())
    for option, default in (
        ("--worker-wait", FIND_TIMEOUT),
        ("--worker-lost-after", LOST_AFTER),
        ("--worker-queue-timeout", QUEUE_TIMEOUT),
    ):
        after = text.split(f"{option} S ", 1)[1]
        assert f"(default: {default:g})" in after.split(" --", 1)[0], (option, after[:300])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "'-1' must be at least 0"),
        ("-100", "'-100' must be at least 0"),
        ("1.5", "invalid number '1.5': a whole number"),
        ("many", "invalid number 'many': a whole number"),
    ],
)
def test_max_dispatches_not_a_count_is_a_usage_error(call: Call, value: str, message: str) -> None:
    """``--max-dispatches -1`` was taken as 0 (the conductor exited without a job, status 0)."""
    done = call("conductor", *_NOWHERE, "--max-dispatches", value, "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert error["message"] == f"pieceworks conductor: argument --max-dispatches: {message}"


def test_max_dispatches_0_and_more_are_counts() -> None:
    """0 stays valid (stop before the first job: tests and scripts use it)."""
    assert [non_negative_count(t) for t in ("0", "1", " 7 ", "+3")] == [0, 1, 7, 3]


def test_run_conductor_refuses_a_negative_max_dispatches_before_connecting() -> None:
    """The API and ``python -m pieceworks.execution`` refuse it too (nothing is reachable here:
    the error comes before any connection)."""
    with pytest.raises(ConfigError, match="max_dispatches must be 0 or more, not -1"):
        run_conductor("c", _NOWHERE[1], _NOWHERE[3], max_dispatches=-1)
    with pytest.raises(SystemExit) as exited:
        execution_main(["conductor", *_NOWHERE, "--max-dispatches", "-1"])
    assert exited.value.code == 2


def test_a_conductor_names_an_unreachable_jobboard_or_persistence_before_starting(
    call: Call,
) -> None:
    """An unreachable Redis or PostgreSQL: exit 1 naming the server; a persistence URL no
    TaskFlow driver takes: exit 2 (were unexpected errors with library text)."""
    board = call("conductor", *_NOWHERE, "--json")
    assert board.code == ExitCode.FAILED, board
    error = json.loads(board.err.strip().splitlines()[-1])
    assert error["reference"] == "jobboard-unavailable", error
    assert "127.0.0.1:1" in error["message"] and "unexpected" not in error["message"], error
    bogus = ("--jobboard", "redis://127.0.0.1:6379/0", "--persistence", "bogus://x")
    persistence = call("conductor", *bogus, "--json")
    assert persistence.code == ExitCode.USAGE, persistence
    error = json.loads(persistence.err.strip().splitlines()[-1])
    assert "bogus://x" in error["message"] and "--persistence" in error["message"], error
    unreachable = ("--jobboard", "redis://127.0.0.1:6379/0", "--persistence", _NOWHERE[3])
    database = call("conductor", *unreachable, "--json")
    assert database.code == ExitCode.FAILED, database
    assert "127.0.0.1:1" in database.err and "unexpected" not in database.err, database
