"""``--chunk-size`` out of range is a usage error caught as the option is parsed.

It was a ``config-error`` with the hint "`pieceworks config` shows the
configuration in use", raised once the request was built: the wrong
reference and hint for a mistyped option.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, MiB, write_volume


@pytest.mark.parametrize(
    "args",
    [
        ["backup", "--volume", "v", "--chunk-size", "1KiB"],
        ["backup", "--volume", "v", "--chunk-size", "0"],
        ["replicate", "--from-backend", "a", "--volume", "v", "--to-backend", "b"],
        ["plan", "backup", "--volume", "v", "--chunk-size", "65MiB"],
        ["jobs", "post", "backup", "--volume", "v", "--chunk-size", "1KiB"],
    ],
)
def test_a_chunk_size_out_of_range_is_a_usage_error(call: Call, args: list[str]) -> None:
    if args[0] == "replicate":
        args = [*args, "--chunk-size", "128MiB"]
    done = call(*args, "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert "--chunk-size" in error["message"] and "out of range" in error["message"], error
    assert "hint" not in error, error


def test_the_bounds_are_accepted(call: Call, home: Path) -> None:
    write_volume(home / "volumes", "v", MiB)
    for size in ("64KiB", "64MiB"):
        done = call("plan", "backup", "--volume", "v", "--chunk-size", size, "--json")
        assert done.code == 0, done
