"""``pieceworks diff ID1 ID2`` checks its ids as every other command does: a usage error.

An empty or invalid id (``diff "" bk-...``, ``diff ../x bk-...``) passed the
parser and failed later with the reference ``invalid-name`` and no usage
line, where ``show ""`` and ``verify ../x`` say ``usage-error``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, Run
from tests.support.backups import make_backup, other_backend_backup, two_backends_config


@pytest.mark.parametrize("ids", [["", "bk-a"], ["bk-a", " "], ["../x", "bk-a"]])
def test_an_empty_or_invalid_id_is_a_usage_error(call: Call, ids: list[str]) -> None:
    done = call("diff", *ids, "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert "argument ID" in error["message"], error


def test_volumes_of_one_name_on_two_backends_are_different_volumes(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """``db`` of backend ``local`` and ``db`` of ``other`` were compared as one volume's
    backups (no --all-volumes needed, the text said "volume 'db'" for both)."""
    ours = make_backup(home, "db", seed=1).backup_id
    theirs = other_backend_backup(tmp_path, home, "db").backup_id
    two = {**env, "PIECEWORKS_CONFIG": str(two_backends_config(tmp_path, home))}
    refused = run("diff", ours, theirs, env=two)
    assert refused.code == ExitCode.USAGE, refused
    assert "volume 'db' of backend 'local'" in refused.err, refused
    assert "volume 'db' of backend 'other'" in refused.err and "--all-volumes" in refused.err
    done = run("diff", ours, theirs, "--all-volumes", env=two)
    assert done.code == ExitCode.OK, done
    assert f"backup {theirs} (volume 'db' of backend 'other') against {ours}" in done.out, done
