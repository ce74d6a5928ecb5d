"""Every timing option of ``conductor`` is checked as it is parsed: a usage error.

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
from pieceworks.execution import dispatch
from pieceworks.execution.timings import FIND_TIMEOUT, LOST_AFTER, QUEUE_TIMEOUT
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
