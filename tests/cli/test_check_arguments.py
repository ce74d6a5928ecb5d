"""``pieceworks check --read-data-subset``: a bad value is a usage error like any other option's.

Other options' bad values (``list --since bogus``, ``backup --chunk-size
xyz``) are argparse errors: ``pieceworks CMD: error: argument --OPT: ...``
after the usage, exit 2. ``--read-data-subset`` used to be parsed after
argparse, so its errors said only ``pieceworks: error: invalid subset ...``
with no option named and no usage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, Run

BAD_VALUES = [
    ("3/2", "N/M needs 1 <= N <= M <= 256"),
    ("0/7", "N/M needs 1 <= N <= M <= 256"),
    ("1/300", "N/M needs 1 <= N <= M <= 256"),
    ("0%", "a percentage must be > 0 and <= 100"),
    ("101%", "a percentage must be > 0 and <= 100"),
    ("half", "use N/M (e.g. 1/7) or a percentage (e.g. 10%)"),
    ("", "use N/M (e.g. 1/7) or a percentage (e.g. 10%)"),
]


@pytest.mark.parametrize(("value", "why"), BAD_VALUES)
def test_a_bad_subset_names_the_option_as_argparse_does(call: Call, value: str, why: str) -> None:
    """Exit 2, ``argument --read-data-subset:`` and the reason, after the usage line."""
    result = call("check", "--read-data-subset", value)
    assert result.code == ExitCode.USAGE, result
    assert (
        f"pieceworks check: error: argument --read-data-subset: invalid subset {value!r}: {why}"
        in result.err
    ), result
    assert result.err.startswith("usage: pieceworks check"), result
    assert result.out == "", result


def test_a_bad_subset_under_json_says_the_same_in_its_exit_error(call: Call) -> None:
    """The JSON exit_error carries the option's name, as other options' usage errors do."""
    result = call("check", "--read-data-subset", "9/7", "--json")
    assert result.code == ExitCode.USAGE, result
    assert result.out == "", result
    doc = json.loads(result.err.strip().splitlines()[-1])  # after the usage, on stderr
    assert doc["message_type"] == "exit_error" and doc["reference"] == "usage-error", doc
    assert doc["message"] == (
        "pieceworks check: argument --read-data-subset: invalid subset '9/7':"
        " N/M needs 1 <= N <= M <= 256"
    ), doc


def test_a_bad_subset_in_a_process_touches_no_store(run: Run, home: Path) -> None:
    """The real console script: exit 2 with the option named, and no store directory made."""
    result = run("check", "--read-data-subset", "7/3")
    assert result.code == ExitCode.USAGE, result
    assert "argument --read-data-subset: invalid subset '7/3'" in result.err, result
    assert not (home / "backups").exists(), result
