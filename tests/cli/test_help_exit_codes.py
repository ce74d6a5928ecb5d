"""Every exit code a command really returns is one its ``--help`` lists.

Each case provokes a documented failure (an unknown store or backend, a
damaged manifest, an unreachable jobboard) and checks the code against the
"exit codes" section of that command's own help: a script writer reads the
help to know what to handle.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, MiB, write_volume

UNREACHABLE = ["--jobboard", "redis://127.0.0.1:1/0", "--persistence", "sqlite:///:memory:"]


def listed_codes(call: Call, command: list[str]) -> set[int]:
    """The codes the "exit codes" section of `command`'s help lists."""
    result = call(*command, "--help")
    assert result.code == 0, result
    section = result.out.split("exit codes", 1)[1]
    return {int(m) for m in re.findall(r"^\s+(\d+)\s", section, re.MULTILINE)}


@pytest.mark.parametrize(
    ("command", "args", "code"),
    [
        (["gc"], ["--store", "nowhere"], ExitCode.NOT_FOUND),
        (["prune"], ["--store", "nowhere"], ExitCode.NOT_FOUND),
        (["check-driver"], ["--backend", "nowhere"], ExitCode.NOT_FOUND),
        (
            ["conductor"],
            [
                "--backends",
                "nowhere",
                "--jobboard",
                "redis://127.0.0.1:6379/15",
                "--persistence",
                "sqlite:///:memory:",
                "--max-dispatches",
                "0",
            ],
            ExitCode.NOT_FOUND,
        ),
        (["jobs", "list"], UNREACHABLE, ExitCode.FAILED),
        (["jobs", "show"], ["some-job", *UNREACHABLE], ExitCode.FAILED),
        (["jobs", "post", "backup"], ["--volume", "v", *UNREACHABLE], ExitCode.FAILED),
        (["jobs", "post", "restore"], ["bk-1", "--volume", "v", *UNREACHABLE], ExitCode.FAILED),
        (
            ["jobs", "post", "replicate"],
            ["--from-backend", "a", "--volume", "v", "--to-backend", "b", *UNREACHABLE],
            ExitCode.FAILED,
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_the_code_of_a_failure_is_listed_in_the_help(
    call: Call, command: list[str], args: list[str], code: ExitCode
) -> None:
    """gc/prune (an unknown store: 3), check-driver and conductor (an unknown backend: 3;
    the conductor stops before it claims anything), and the jobs commands (an
    unreachable jobboard: 1) returned codes their help omits."""
    result = call(*command, *args)
    assert result.code == code, result
    assert code in listed_codes(call, command), (command, result)


def test_plan_restore_of_a_damaged_manifest_exits_with_a_listed_code(
    call: Call, home: Path
) -> None:
    """plan restore of a backup whose manifest is damaged exits 4, which its help omitted."""
    write_volume(home / "volumes", "vol-1", MiB)
    backup = call("backup", "--volume", "vol-1", "--json", "--quiet")
    assert backup.code == 0, backup
    backup_id = backup.json()["backup_id"]
    manifest = home / "backups" / "manifests" / f"{backup_id}.json"
    manifest.write_bytes(manifest.read_bytes()[:-20])
    result = call("plan", "restore", backup_id)
    assert result.code == ExitCode.CORRUPT, result
    assert ExitCode.CORRUPT in listed_codes(call, ["plan", "restore"])
