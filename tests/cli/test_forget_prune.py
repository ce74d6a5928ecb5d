"""``forget`` removes backups by restic's rules, per volume; ``prune`` (alias ``gc``) frees chunks.

Backups are made by the real command; their creation times are then moved
to chosen days by rewriting the manifests in the real POSIX store (the one
thing a test cannot wait for is calendar time).
"""

from __future__ import annotations

import os
import signal
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Run, RunAll, _start
from tests.support.backups import make_backup, set_created


def backups(home: Path, volume: str, n: int, **labels: str) -> list[str]:
    """`n` backups of `volume` (distinct data each), oldest first."""
    return [
        make_backup(
            home, volume, seed=zlib.crc32(f"{volume}-{i}".encode()), labels=labels
        ).backup_id
        for i in range(n)
    ]


def listed(run: Run) -> list[str]:
    done = run("list", "--json")
    assert done.code == 0, done
    return [r["backup_id"] for r in done.json()]


def test_forget_keep_daily_per_volume_with_dry_run_then_prune(run: Run, home: Path) -> None:
    """Dry run changes nothing; forget keeps each day's newest per volume; --prune frees chunks."""
    a = backups(home, "vol-a", 4)
    b = backups(home, "vol-b", 1)
    days = [datetime(2026, 3, d, h, tzinfo=UTC) for d, h in ((1, 9), (2, 8), (2, 20), (3, 7))]
    for backup_id, when in zip(a, days, strict=True):
        set_created(home, backup_id, when)
    chunks_before = len(list((home / "backups" / "chunks").rglob("*")))

    dry = run("forget", "--keep-daily", "2", "--dry-run", "--json")
    assert dry.code == 0, dry
    doc = dry.json()
    assert doc["dry_run"] is True and doc["removed"] == []
    assert sorted(doc["would_remove"]) == sorted([a[0], a[1]])
    assert doc["policy"]["keep_daily"] == 2 and doc["policy"]["keep_last"] == 0
    groups = {g["volume_id"]: g["backups"] for g in doc["groups"]}
    assert [x["backup_id"] for x in groups["vol-a"]] == [a[3], a[2], a[1], a[0]]
    assert groups["vol-a"][0]["reasons"] == ["daily"] and groups["vol-a"][2]["keep"] is False
    assert groups["vol-b"] == [
        {
            "backup_id": b[0],
            "created": groups["vol-b"][0]["created"],
            "keep": True,
            "reasons": ["daily"],
        }
    ]
    assert sorted(listed(run)) == sorted(a + b)  # nothing removed by the dry run

    text = run("forget", "--keep-daily", "2", "--prune")
    assert text.code == 0, text
    assert "keep 2 daily backups of each volume" in text.out
    assert f"remove  {a[0]}  2026-03-01T09:00:00Z" in text.out
    assert f"keep    {a[3]}  2026-03-03T07:00:00Z  daily" in text.out
    assert "removed 2 backup(s); pruned" in text.out
    assert sorted(listed(run)) == sorted([a[2], a[3], b[0]])
    chunks_after = len(list((home / "backups" / "chunks").rglob("*")))
    assert chunks_after < chunks_before
    verify = run("verify", a[2])
    assert verify.code == 0, verify  # kept backups still have every chunk


def test_forget_keep_last_with_volume_and_label_filters(run: Run, home: Path) -> None:
    """Only backups matching --volume and --label are considered; others are untouched."""
    nightly = backups(home, "vol-a", 3, kind="nightly")
    manual = backups(home, "vol-a", 1, kind="manual")
    other = backups(home, "vol-b", 2, kind="nightly")
    done = run(
        "forget", "--keep-last", "1", "--volume", "vol-a", "--label", "kind=nightly", "--json"
    )
    assert done.code == 0, done
    assert done.json()["removed"] == [nightly[1], nightly[0]]
    assert sorted(listed(run)) == sorted([nightly[2], *manual, *other])
    assert done.json()["prune"] is None


def test_forget_without_a_policy_or_with_a_bad_count_is_a_usage_error(run_all: RunAll) -> None:
    no_policy, zero, bad, bad_label = run_all(
        timeout=300,
        commands=[
            ["forget"],
            ["forget", "--keep-last", "0"],
            ["forget", "--keep-daily", "-3"],
            ["forget", "--keep-last", "1", "--label", "novalue"],
        ],
    )
    assert no_policy.code == ExitCode.USAGE, no_policy
    assert "forget needs a policy" in no_policy.err
    assert zero.code == ExitCode.USAGE and "needs a policy" in zero.err
    assert bad.code == ExitCode.USAGE and "invalid count '-3'" in bad.err
    assert bad_label.code == ExitCode.USAGE and "invalid label 'novalue'" in bad_label.err


def test_forget_refuses_a_store_with_a_damaged_manifest(run: Run, home: Path) -> None:
    """Nothing is removed while a manifest cannot be read; exit 4 names it."""
    ids = backups(home, "vol-a", 2)
    path = home / "backups" / "manifests" / f"{ids[0]}.json"
    path.write_bytes(path.read_bytes().replace(b'"size"', b'"SIZE"', 1))
    done = run("forget", "--keep-last", "1")
    assert done.code == ExitCode.CORRUPT, done
    assert ids[0] in done.err and "nothing was removed" in done.err
    assert (home / "backups" / "manifests" / f"{ids[1]}.json").exists()


def test_forget_on_an_empty_store_and_prune_under_both_names(run: Run, run_all: RunAll) -> None:
    empty, prune, gc = run_all(
        timeout=300,
        commands=[
            ["forget", "--keep-last", "1"],
            ["prune", "--json"],
            ["gc", "--dry-run", "--json"],
        ],
    )
    assert empty.code == 0 and "no backups to decide on" in empty.err, empty
    assert prune.code == 0 and prune.json()["chunks_deleted"] == 0, prune
    assert gc.code == 0 and gc.json()["dry_run"] is True, gc


def _stopped_while_removing_manifests(
    args: list[str], env: dict[str, str], tmp_path: Path, signum: int, home: Path
) -> tuple[int, str]:
    """Run `args`, send `signum` once the first manifest is removed (held there 3 s), wait."""
    slow = {**env, "PIECEWORKS_FAILPOINTS": "delete.manifest-removed=sleep:3000@1"}
    proc = _start(args, slow, tmp_path)
    manifests = home / "backups" / "manifests"
    before = len(list(manifests.iterdir()))
    deadline = time.monotonic() + 60
    while len(list(manifests.iterdir())) == before:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_while_forget_removes_manifests_stops_it_before_the_collection(
    signum: int, run: Run, env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    """The manifests it started removing are all removed, then it stops: exit 130, no prune.

    Removing manifests ran with the signals ignored: the signal was lost,
    the whole collection ran, and the command exited 0.
    """
    old = backups(home, "vol-a", 3)
    chunks = home / "backups" / "chunks"
    chunks_before = sorted(p.name for p in chunks.rglob("*") if p.is_file())
    code, err = _stopped_while_removing_manifests(
        ["forget", "--keep-last", "1", "--prune"], env, tmp_path, signum, home
    )
    assert code == ExitCode.INTERRUPTED, err
    assert "interrupted: backups " in err and "were deleted" in err, err
    assert old[0] in err and old[1] in err and old[2] not in err, err
    assert "no garbage collection ran" in err, err
    assert listed(run) == [old[2]]  # both removals finished
    assert sorted(p.name for p in chunks.rglob("*") if p.is_file()) == chunks_before
    assert run("prune").code == 0  # the lock was not left behind


def test_a_signal_while_delete_removes_manifests_stops_it_before_the_collection(
    run: Run, env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    """``delete A B``: both manifests go, the collection does not run, exit 130."""
    ids = backups(home, "vol-a", 3)
    code, err = _stopped_while_removing_manifests(
        ["delete", ids[0], ids[1]], env, tmp_path, signal.SIGTERM, home
    )
    assert code == ExitCode.INTERRUPTED, err
    assert f"backups {ids[0]}, {ids[1]} were deleted" in err, err
    assert listed(run) == [ids[2]]


def test_prune_grace_keeps_young_unreferenced_chunks_and_zero_removes_them(
    run: Run, run_all: RunAll, home: Path
) -> None:
    """A chunk stored just now with no lease or manifest (a listing that missed them)."""
    chunks = home / "backups" / "chunks"
    fresh = chunks / "ab" / ("ab" + "1" * 62)
    old = chunks / "cd" / ("cd" + "2" * 62)
    for path in (fresh, old):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"chunk")
    long_ago = time.time() - 7200
    os.utime(old, (long_ago, long_ago))

    kept = run("prune", "--grace", "3600", "--json")
    assert kept.code == 0, kept
    doc = kept.json()
    assert (doc["chunks_deleted"], doc["chunks_in_grace"], doc["grace_seconds"]) == (1, 1, 3600)
    assert fresh.exists() and not old.exists()
    text = run("prune", "--grace", "3600")
    assert "kept 1 younger than the grace of 3600 s" in text.out, text

    gone = run("prune", "--grace", "0", "--json")
    assert gone.code == 0 and gone.json()["chunks_deleted"] == 1, gone
    assert not fresh.exists()

    for bad in ("-1", "soon", "inf"):
        refused = run("prune", "--grace", bad)
        assert refused.code == ExitCode.USAGE, refused
        assert f"invalid grace {bad!r}" in refused.err
