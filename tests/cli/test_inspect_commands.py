"""``show``, ``stats``, ``check`` and ``diff`` end to end, in subprocesses, on real stores.

The backups they look at are made in-process (`tests.support.backups`) on
the same built-in backend and store the command uses; every command under
test runs as its own ``pieceworks`` process.
"""

from __future__ import annotations

from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols.chunks import chunk_key
from tests.cli.conftest import Call, Run, RunAll
from tests.support.backups import make_backup

KiB = 1024


def _change(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_show_stats_diff_on_a_full_and_an_incremental_backup(
    run: Run, run_all: RunAll, home: Path
) -> None:
    """The JSON and text of each command say what the manifests hold."""
    full = make_backup(home, "vol-1", size=512 * KiB, labels={"env": "prod"})
    _change(home / "volumes" / "vol-1", 200 * KiB, b"changed" * 100)
    incr = make_backup(home, "vol-1", fresh=False, incremental=True)
    other = make_backup(home, "vol-2", size=128 * KiB, seed=5)

    show, show_text, stats, stats_one, diff, diff_text, same = run_all(
        timeout=300,
        commands=[
            ["show", full.backup_id, "--json"],
            ["show", incr.backup_id],
            ["stats", "--json"],
            ["stats", "--volume", "vol-2"],
            ["diff", full.backup_id, incr.backup_id, "--json"],
            ["diff", full.backup_id, incr.backup_id],
            ["diff", incr.backup_id, incr.backup_id],
        ],
    )
    assert show.code == 0, show
    doc = show.json()
    assert doc["backup_id"] == full.backup_id and doc["volume_id"] == "vol-1"
    assert doc["backend"] == "local" and doc["store"] == "local"
    assert doc["labels"] == {"env": "prod"} and doc["strategy"] == "direct-stream"
    assert doc["reason"] == "the volume is not in use: it is read directly"
    assert [s["name"] for s in doc["plan"]] == ["offload", "direct-stream", "snapshot-stream"]
    assert doc["plan"][0]["eligible"] is False and doc["enhancers"] == ["allocated-extents"]
    # Random data does not shrink: such chunks are stored plain ("none").
    assert sum(doc["codecs"].values()) == 8 and set(doc["codecs"]) <= {"zstd", "none"}
    assert doc["codec"] == "zstd" and doc["chunks_total"] == 8
    assert doc["bytes_stored"] == full.bytes_stored and doc["parent"] is None
    assert doc["failed_strategies"] == [] and isinstance(doc["created"], float)

    assert show_text.code == 0, show_text
    assert f"backup {incr.backup_id} of volume 'vol-1'" in show_text.out
    assert f"parent      {full.backup_id} (incremental)" in show_text.out
    assert "-> direct-stream: the volume is not in use" in show_text.out
    assert "labels      -" in show_text.out
    # "8 of 64.0 KiB" read as a fraction: the count, then the size of each.
    assert "chunks      8 (" in show_text.out and "distinct), 64.0 KiB each" in show_text.out

    assert stats.code == 0, stats
    figures = stats.json()
    vol1 = next(v for v in figures["volumes"] if v["volume_id"] == "vol-1")
    assert vol1["backups"] == 2 and vol1["bytes_logical"] == 1024 * KiB
    assert vol1["chunks_unique"] == 9 and vol1["dedup_ratio"] == round(16 / 9, 3)
    assert figures["total"]["backups"] == 3 and figures["total"]["chunks_unique"] == 11
    assert figures["manifests_unreadable"] == []
    assert stats_one.code == 0 and "vol-2" in stats_one.out and "vol-1" not in stats_one.out

    assert diff.code == 0, diff
    assert diff.json()["ranges"] == [{"offset": 192 * KiB, "length": 64 * KiB, "kind": "changed"}]
    assert diff.json()["exact"] is True and diff.json()["bytes_differing"] == 64 * KiB
    assert "64.0 KiB differ in 1 range(s)" in diff_text.out
    assert same.code == 0 and "identical" in same.out

    errors = run_all(
        timeout=300,
        commands=[
            ["diff", full.backup_id, other.backup_id],
            ["diff", full.backup_id, other.backup_id, "--all-volumes", "--json"],
            ["diff", full.backup_id, other.backup_id, "--all-volumes"],
            ["show", "bk-nosuchbackup"],
            ["diff", full.backup_id, "bk-nosuchbackup"],
            ["show", "../etc"],
        ],
    )
    volumes, forced, forced_text, unknown, unknown_diff, bad_id = errors
    assert volumes.code == ExitCode.USAGE and "--all-volumes" in volumes.err, volumes
    assert forced.code == 0 and forced.json()["size_b"] == 128 * KiB, forced
    # Backups of two volumes: each is named with its own (it said "(volume 'vol-1')" only).
    assert forced_text.code == 0, forced_text
    assert (
        f"backup {other.backup_id} (volume 'vol-2') against {full.backup_id} (volume 'vol-1')"
        in forced_text.out
    ), forced_text
    assert unknown.code == ExitCode.NOT_FOUND and "bk-nosuchbackup" in unknown.err
    assert unknown_diff.code == ExitCode.NOT_FOUND
    assert bad_id.code == ExitCode.USAGE, bad_id


def test_check_prints_its_summary_and_every_problem_with_the_right_exit_code(
    run: Run, run_all: RunAll, home: Path
) -> None:
    """OK, then a missing chunk (exit 1, summary still printed), then a damaged manifest (4)."""
    first = make_backup(home, "vol-1", size=256 * KiB)
    second = make_backup(home, "vol-1", size=256 * KiB, seed=3)
    ok, ok_read, bad_subset = run_all(
        timeout=300,
        commands=[
            ["check", "--json"],
            ["check", "--read-data-subset", "1/2", "--json"],
            ["check", "--read-data-subset", "3/2"],
        ],
    )
    assert ok.code == 0, ok
    assert ok.json()["ok"] is True and ok.json()["chunks_referenced"] == 8
    assert ok.json()["chunks_read"] == 0 and ok.json()["read_data_subset"] is None
    assert ok_read.code == 0 and ok_read.json()["read_data_subset"] == "1/2", ok_read
    assert bad_subset.code == ExitCode.USAGE and "invalid subset '3/2'" in bad_subset.err

    store = home / "backups"
    digest = read_manifest(PosixStore(store), first.backup_id).chunks[0].digest
    (store / chunk_key(digest)).unlink()
    missing, missing_json = run_all(timeout=300, commands=[["check"], ["check", "--json"]])
    assert missing.code == ExitCode.FAILED, missing
    assert "store 'local': 2 manifests (0 unreadable), 8 chunks referenced, 7 present" in (
        missing.out
    )
    assert f"chunk-missing: {chunk_key(digest)}" in missing.out and first.backup_id in missing.out
    problems = missing_json.json()["problems"]
    assert [p["kind"] for p in problems] == ["chunk-missing"]
    assert problems[0]["backup_ids"] == [first.backup_id]

    manifest = store / "manifests" / f"{second.backup_id}.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"vol-1", b"vol-9", 1))
    damaged = run("check")
    assert damaged.code == ExitCode.CORRUPT, damaged
    assert "2 manifests (1 unreadable)" in damaged.out and "manifest-unreadable" in damaged.out


def test_stats_and_check_on_an_empty_store(run_all: RunAll) -> None:
    stats, check = run_all(timeout=300, commands=[["stats", "--json"], ["check"]])
    assert stats.code == 0 and stats.json()["total"]["backups"] == 0, stats
    assert check.code == 0 and "no problems found" in check.out, check


def test_check_says_a_missing_chunk_was_quarantined_by_verify(run: Run, home: Path) -> None:
    """After ``verify`` moved a damaged chunk aside, ``check`` called it just "missing":
    nothing said where it went, nor that the next backup stores it again."""
    first = make_backup(home, "vol-1", size=256 * KiB)
    store = home / "backups"
    digest = read_manifest(PosixStore(store), first.backup_id).chunks[0].digest
    path = store / chunk_key(digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    verified = run("verify", first.backup_id)
    assert verified.code == ExitCode.FAILED and "moved aside to quarantine/" in verified.out
    checked = run("check")
    assert checked.code == ExitCode.FAILED, checked
    assert "is missing (verify moved it aside, damaged, to quarantine/; the next backup" in (
        checked.out
    ), checked


def test_show_of_a_backup_without_chunks_does_not_name_the_codec_none(
    call: Call, home: Path
) -> None:
    """A backup of an all-zero volume stores no chunk: show said "(chunks by codec: none)",
    which reads as chunks stored with the codec ``none``."""
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "zeros").write_bytes(bytes(128 * KiB))
    backup = call("backup", "--volume", "zeros", "--json", "--quiet")
    assert backup.code == 0, backup
    shown = call("show", backup.json()["backup_id"])
    assert shown.code == 0, shown
    assert "codec       zstd (no chunk stored)" in shown.out, shown
