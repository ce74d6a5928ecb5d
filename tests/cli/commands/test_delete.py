"""``delete`` and ``forget --prune`` whose chunk collection fails say the backups are gone.

With a chunk folder the command may not write to, ``delete ID`` removed the
manifest, then failed collecting with ``cannot delete chunks/..:
Permission denied`` alone (exit 1): run again, it said "no backup ID",
and nothing had told that the backup was deleted and its chunks left for
``prune``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import without_dac_override
from tests.support.backups import make_backup


@pytest.fixture
def read_only_chunks(home: Path) -> Iterator[list[str]]:
    """Two backups of vol-1 sharing no chunk, one of vol-2; chunk folders made read-only.

    Returns the backup ids, oldest first; the folders are writable again afterwards.
    """
    ids = [make_backup(home, v, seed=s).backup_id for v, s in (("vol-1", 1), ("vol-1", 2))]
    ids.append(make_backup(home, "vol-2", seed=3).backup_id)
    folders = [p for p in (home / "backups" / "chunks").iterdir() if p.is_dir()]
    for folder in folders:
        folder.chmod(0o555)
    yield ids
    for folder in folders:
        folder.chmod(0o755)


@pytest.mark.parametrize("how", ["one", "several", "forget"])
def test_a_failed_collection_says_which_backups_were_deleted(
    env: dict[str, str], home: Path, tmp_path: Path, read_only_chunks: list[str], how: str
) -> None:
    old, _new, other = read_only_chunks
    args, gone = {
        "one": (["delete", old], [old]),
        "several": (["delete", old, other], [old, other]),
        "forget": (["forget", "--keep-last", "1", "--prune"], [old]),
    }[how]
    done = without_dac_override([*args, "--json"], env, tmp_path)
    assert done.code == ExitCode.FAILED, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "backend-error", error
    named = ", ".join(gone)
    assert f"{named} {'was' if len(gone) == 1 else 'were'} deleted" in error["message"], error
    assert "collecting the chunks no backup references failed" in error["message"], error
    assert "Permission denied" in error["message"] and "prune" in error["hint"], error
    listed = without_dac_override(["list", "--json"], env, tmp_path)
    assert sorted(r["backup_id"] for r in listed.json()) == sorted(
        set(read_only_chunks) - set(gone)
    )
