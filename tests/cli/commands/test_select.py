"""``list --since/--until TIME``: a Unix time is any number, as the help and docs say.

Only numbers of more than eight digits were taken as Unix times; ``--until 0``
or ``--since 86400`` were "invalid time" (exit 2). Eight digits that make a
date (``20261130``) stay ISO 8601's basic form.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Run
from tests.support.backups import make_backup


@pytest.mark.parametrize(
    ("option", "listed"),
    [
        (["--until", "0"], False),
        (["--until", "86400.5"], False),
        (["--since", "0"], True),
        (["--since", "12345678"], True),  # eight digits, no date: 1970-05-23
        (["--until", "20000101"], False),  # eight digits, a date: 2000-01-01
        (["--since", "20000101"], True),
    ],
)
def test_small_unix_times_are_times(run: Run, home: Path, option: list[str], listed: bool) -> None:
    backup_id = make_backup(home, "vol-1").backup_id
    done = run("list", *option, "--json")
    assert done.code == ExitCode.OK, done
    assert [r["backup_id"] for r in done.json()] == ([backup_id] if listed else []), done
