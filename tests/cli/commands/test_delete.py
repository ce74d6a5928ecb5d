"""``delete``, ``forget --prune`` and ``prune``: their garbage collection, failed or stopped.

With a chunk folder the command may not write to, ``delete ID`` removed the
manifest, then failed collecting with ``cannot delete chunks/..:
Permission denied`` alone (exit 1): run again, it said "no backup ID",
and nothing had told that the backup was deleted and its chunks left for
``prune``. And the collection ignored Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import COMMAND, without_dac_override
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


def _orphans(home: Path, n: int) -> list[Path]:
    """`n` chunk objects no backup references."""
    out = []
    for i in range(n):
        digest = f"{i:02x}" * 32
        path = home / "backups" / "chunks" / digest[:2] / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"orphan")
        out.append(path)
    return out


@pytest.mark.parametrize(
    ("args", "deleted"),
    [
        (["prune"], ""),
        (["gc"], ""),
        (["forget", "--keep-last", "1", "--prune"], "backup A was deleted; "),
        (["delete", "A", "B"], "backups A, B were deleted; "),
    ],
)
def test_sigterm_stops_a_garbage_collection_between_two_deletions(
    env: dict[str, str], home: Path, tmp_path: Path, args: list[str], deleted: str
) -> None:
    """Collection ran with Ctrl-C, SIGTERM and SIGHUP ignored: a prune of a large store
    (a request per chunk on Swift) could be stopped by SIGKILL only. It now stops, exit
    130, its lock released, the chunks it did not reach left for the next prune."""
    ids = {"A": make_backup(home, "vol-1", seed=1).backup_id}
    ids["B"] = make_backup(home, "vol-1", seed=2).backup_id
    orphans = _orphans(home, 4)  # chunks/00/00.. is the first chunk collected
    slow = {**env, "PIECEWORKS_FAILPOINTS": "gc.chunk-deleted=sleep:30000"}
    command = [*COMMAND, *(ids.get(x, x) for x in args), "--json"]
    proc = subprocess.Popen(
        command, env=slow, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while orphans[0].exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == ExitCode.INTERRUPTED, (out, err)
    error = json.loads(err.strip().splitlines()[-1])
    assert error["reference"] == "interrupted", error
    for name, backup_id in ids.items():
        deleted = deleted.replace(name, backup_id)
    assert f"interrupted: {deleted}garbage collection stopped" in error["message"], error
    assert [p.exists() for p in orphans] == [False, True, True, True]
    assert not list((home / "backups" / "locks").glob("gc.*"))
