"""``pieceworks find`` with an empty attribute is a usage error.

``find ""`` (or ``--any ""``, ``--none " "``) reached the registry, which
refuses an empty tag with a ``TypeError``: an ``unexpected-error``, exit 1.
"""

from __future__ import annotations

import json

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Run


@pytest.mark.parametrize(
    ("args", "option"),
    [
        ([""], "ATTR"),
        (["live-backup", "  "], "ATTR"),
        (["--any", ""], "--any"),
        (["live-backup", "--none", " "], "--none"),
    ],
)
def test_an_empty_attribute_is_a_usage_error(run: Run, args: list[str], option: str) -> None:
    done = run("find", *args, "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert f"argument {option}: an attribute must not be empty or blank" in error["message"]
