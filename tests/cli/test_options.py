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
from pieceworks.cli.options import parse_size
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


#: Numbers Python's int() or float() read but nobody types on purpose: an underscore
#: group, other scripts' digits (Arabic-Indic, fullwidth), a superscript, nan and inf.
ODD_NUMBERS = ["1_0", "\u0663", "\uff13", "\u00b2", "nan", "inf", "0x10", ""]


@pytest.mark.parametrize("odd", ODD_NUMBERS)
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["backup", "--volume", "v", "--chunk-size"], "--chunk-size"),
        (["backup", "--volume", "v", "--guard-sample"], "--guard-sample"),
        (["backup", "--volume", "v", "--guard-max-chunks"], "--guard-max-chunks"),
        (["list", "--since"], "--since"),
        (["forget", "--keep-last"], "--keep-last"),
        (["conductor", "--max-dispatches"], "--max-dispatches"),
        (["conductor", "--claim-expiry"], "--claim-expiry"),
        (["worker", "--backend", "b", "--threads"], "--threads"),
        (["target", "serve", "--port"], "--port"),
        (["jobs", "watch", "j", "--timeout"], "--timeout"),
    ],
)
def test_a_number_only_python_reads_is_a_usage_error(
    call: Call, args: list[str], option: str, odd: str
) -> None:
    """Each numeric option takes ASCII digits: ``--max-dispatches 1_0`` meant 10, ``٣`` 3."""
    done = call(*args, odd, "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert option in error["message"], error


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4MiB", 4 * MiB),
        ("4 MiB", 4 * MiB),
        ("4m", 4 * MiB),
        ("4MB", 4 * MiB),
        ("65536", 65536),
        ("0.5MiB", MiB // 2),
        ("1PiB", 1 << 50),
        ("2E", 2 << 60),
    ],
)
def test_sizes_in_every_documented_form_are_read(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("since", "until"), [("2026-11-30", "2026-11-01"), ("2026-11-30", "2026-11-30")]
)
def test_list_with_since_not_before_until_is_a_usage_error(
    call: Call, since: str, until: str
) -> None:
    """No backup can match: it listed nothing, exit 0, as if the store were empty."""
    done = call("list", "--since", since, "--until", until)
    assert done.code == ExitCode.USAGE, done
    assert "--since (2026-11-30T00:00:00Z) is not before --until" in done.err, done
