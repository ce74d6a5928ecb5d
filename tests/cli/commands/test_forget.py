"""``forget`` refusing a store with a damaged manifest says ``unreadable-manifests``.

It said ``corruption`` (exit 4 all the same) where ``list``, ``stats``,
``check`` and ``gc`` say ``unreadable-manifests`` of the same store, the
reference docs/cli.md gives for damaged manifests.
"""

from __future__ import annotations

import json
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call
from tests.support.backups import make_backup


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
