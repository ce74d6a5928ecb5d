"""``forget`` refusing a store with a damaged manifest says ``unreadable-manifests``.

It said ``corruption`` (exit 4 all the same) where ``list``, ``stats``,
``check`` and ``gc`` say ``unreadable-manifests`` of the same store, the
reference docs/cli.md gives for damaged manifests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, Run
from tests.support.backups import make_backup, other_backend_backup, two_backends_config


def test_forget_and_list_give_the_same_reference_for_a_damaged_manifest(
    call: Call, home: Path
) -> None:
    damaged = make_backup(home, "vol-1", seed=1).backup_id
    make_backup(home, "vol-1", seed=2)
    (home / "backups" / "manifests" / f"{damaged}.json").write_text("garbage")
    references = []
    for args in (["forget", "--keep-last", "1"], ["list"]):
        done = call(*args, "--json")
        assert done.code == ExitCode.CORRUPT, done
        references.append(json.loads(done.err.strip().splitlines()[-1])["reference"])
    assert references == ["unreadable-manifests", "unreadable-manifests"]


def test_forget_keeps_each_backends_volume_apart_even_under_one_name(
    run: Run, env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    """``db`` of backend ``local`` and ``db`` of ``other`` are two volumes: each keeps its newest.

    forget grouped by volume id alone, so ``--keep-last 1`` removed the only
    backup of one backend's ``db`` because the other backend's ``db`` had a
    newer one: a whole volume's history lost.
    """
    ours = make_backup(home, "db", seed=1).backup_id
    theirs = other_backend_backup(tmp_path, home, "db").backup_id
    two = {**env, "PIECEWORKS_CONFIG": str(two_backends_config(tmp_path, home))}

    dry = run("forget", "--keep-last", "1", "--dry-run", "--json", env=two)
    assert dry.code == ExitCode.OK, dry
    doc = dry.json()
    assert doc["would_remove_backup_ids"] == [], doc
    assert sorted((g["backend"], g["volume_id"]) for g in doc["groups"]) == [
        ("local", "db"),
        ("other", "db"),
    ]
    text = run("forget", "--keep-last", "1", env=two)
    assert text.code == ExitCode.OK, text
    assert "volume db (backend local): keep 1, remove 0" in text.out, text
    assert "volume db (backend other): keep 1, remove 0" in text.out, text
    listed = run("list", "--json", env=two).json()
    assert sorted(r["backup_id"] for r in listed) == sorted([ours, theirs])


@pytest.mark.parametrize("count", ["1_0", "\u0663", "\uff13", "+-1", "1.0", ""])
def test_a_count_of_other_than_ascii_digits_is_a_usage_error(call: Call, count: str) -> None:
    """``--keep-last 1_0`` kept 10 backups, an Arabic-Indic 3 three (Python's int)."""
    done = call("forget", "--keep-last", count, "--dry-run")
    assert done.code == ExitCode.USAGE, done
    assert f"invalid count {count!r}" in done.err, done
