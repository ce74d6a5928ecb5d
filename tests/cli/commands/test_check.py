"""``check --read-data-subset`` with a chunk it may not read prints its summary, naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, without_dac_override
from tests.support.backups import make_backup


def test_an_unreadable_chunk_is_a_problem_of_the_summary_not_the_end_of_the_check(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A chunk object without read permission ended the check with ``cannot get ...:
    Permission denied`` (exit 1): no summary, and no word of the other chunks."""
    made = make_backup(home, "vol-1", seed=1)
    manifest = json.loads((home / "backups" / "manifests" / f"{made.backup_id}.json").read_text())
    digest = str(manifest["manifest"]["chunks"][0][2])
    chunk = home / "backups" / "chunks" / digest[:2] / digest
    chunk.chmod(0)
    try:
        done = without_dac_override(
            ["check", "--read-data-subset", "100%", "--json"], env, tmp_path
        )
    finally:
        chunk.chmod(0o644)
    assert done.code == ExitCode.FAILED, done
    summary = done.json()
    assert summary["chunks_unreadable"] == 1 and summary["chunks_read"] > 1, summary
    [problem] = summary["problems"]
    assert problem["kind"] == "chunk-unreadable", problem
    assert problem["key"] == f"chunks/{digest[:2]}/{digest}", problem
    assert "Permission denied" in problem["detail"] and problem["backup_ids"] == [made.backup_id]
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "check-problems", error


@pytest.mark.parametrize("subset", ["\uff11/\uff12", "\uff150%", "1/\u0663"])
def test_a_subset_of_other_than_ascii_digits_is_a_usage_error(call: Call, subset: str) -> None:
    """``--read-data-subset`` with fullwidth 1/2 was read as 1/2 (a regular expression's \\d)."""
    done = call("check", "--read-data-subset", subset)
    assert done.code == ExitCode.USAGE, done
    assert f"invalid subset {subset!r}" in done.err, done
