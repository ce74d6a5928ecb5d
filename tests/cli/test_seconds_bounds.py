"""A timing in seconds is finite and at most 365 days, on the command line and in ``[jobs]``.

``[jobs] claim_expiry = nan`` (TOML has ``nan`` and ``inf``) passed the
configuration's check (``nan <= 0`` is false), and the conductor that
claimed a job with it died with ``unexpected ValueError: cannot convert
float NaN to integer``; ``inf`` and ``keep_finished`` likewise.
``--claim-expiry 1e300`` passed the option's check (finite) and the
conductor renewed its claim by ``Event.wait(1e300 / 3)``, an
``OverflowError`` it logged as "the jobboard is unreachable", claiming
nothing, for ever. Both are refused before anything runs now: exit 2
naming the key or option (no jobboard is reached: none is reachable here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Run, config_file

_NOWHERE = ("--jobboard", "redis://127.0.0.1:1/x", "--persistence", "postgresql://127.0.0.1:1/x")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("claim_expiry", "nan"),
        ("claim_expiry", "inf"),
        ("claim_expiry", "1e300"),
        ("claim_expiry", "31536001"),
        ("keep_finished", "nan"),
        ("keep_finished", "inf"),
    ],
)
def test_a_jobs_timing_that_is_not_finite_or_too_large_is_a_config_error(
    run: Run, tmp_path: Path, env: dict[str, str], key: str, value: str
) -> None:
    path = config_file(tmp_path, f"[jobs]\n{key} = {value}\n")
    done = run("conductor", *_NOWHERE, "--max-dispatches", "0", "--json",
               env={**env, "PIECEWORKS_CONFIG": str(path)})  # fmt: skip
    assert done.code == 2 and done.out == "", done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "config-error", error
    assert f"[jobs]: {key} must be a positive finite number of seconds" in error["message"], error


def test_a_year_of_claim_expiry_is_accepted(run: Run, tmp_path: Path, env: dict[str, str]) -> None:
    """The bound is 365 days: a large but sane value still loads (``config`` shows it)."""
    path = config_file(tmp_path, "[jobs]\nclaim_expiry = 31536000\nkeep_finished = 3e8\n")
    done = run("config", "--json", env={**env, "PIECEWORKS_CONFIG": str(path)})
    assert done.code == 0, done


@pytest.mark.parametrize("option", ["--claim-expiry", "--wait-timeout", "--worker-wait"])
@pytest.mark.parametrize("value", ["1e300", "31536001"])
def test_a_timing_option_above_a_year_is_a_usage_error(run: Run, option: str, value: str) -> None:
    done = run("conductor", *_NOWHERE, "--max-dispatches", "0", option, value, "--json")
    assert done.code == 2 and done.out == "", done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert error["message"].startswith(f"pieceworks conductor: argument {option}: "), error
    assert "at most 31536000" in error["message"] and repr(value) in error["message"], error


def test_jobs_watch_timeout_above_a_year_is_a_usage_error(run: Run) -> None:
    done = run("jobs", "watch", "some-job", *_NOWHERE, "--timeout", "1e12")
    assert done.code == 2, done
    assert "argument --timeout" in done.err and "at most 31536000" in done.err, done
