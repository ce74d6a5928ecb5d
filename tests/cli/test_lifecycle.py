"""backup, list, verify, restore, delete, gc and volumes, end to end on the defaults.

These run on the built-in backend and store under ``PIECEWORKS_HOME``; the
first backup also on the built-in SQLite persistence (the rest in memory,
which is faster).
"""

from __future__ import annotations

import os
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, MiB, Run, RunAll, write_volume


def _change(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_backup_list_verify_restore_delete_on_builtin_defaults(
    run: Run, run_all: RunAll, home: Path, bare_env: dict[str, str]
) -> None:
    """A full and an incremental backup, restored byte for byte; delete collects chunks."""
    volumes = home / "volumes"
    vol = write_volume(volumes, "vol-1", 8 * MiB)
    original = vol.read_bytes()

    full = run("backup", "--volume", "vol-1", "--chunk-size", "1MiB", "--json", env=bare_env)
    assert full.code == 0, full
    first = full.json()
    assert first["strategy"] == "direct-stream" and first["volume_id"] == "vol-1"
    assert first["bytes_read"] == 8 * MiB and first["bytes_stored"] >= 8 * MiB
    assert first["seconds"] > 0 and first["plan"]["chosen"] == "direct-stream"
    assert not (home / "pieceworks.db").exists()  # the embedded default persists nothing

    _change(vol, 3 * MiB + 10, b"changed!" * 100)
    changed = vol.read_bytes()
    incr = run("backup", "--volume", "vol-1", "--in-use", "--incremental", "--chunk-size", "1MiB")
    assert incr.code == 0, incr
    assert "strategy  snapshot-stream" in incr.out and f"parent    {first['backup_id']}" in incr.out
    assert "1.0 MiB new (1 new chunks)" in incr.out
    second_id = incr.out.split()[1]

    listed, text_list, verified, copy, in_place = run_all(
        [
            ["list", "--json"],
            ["list"],
            ["verify", second_id],
            ["restore", second_id, "--volume", "vol-copy", "--json"],
            # back onto the backup's own volume: only when named, with --overwrite
            ["restore", first["backup_id"], "--volume", "vol-1", "--overwrite", "-q"],
        ]
    )
    assert listed.code == 0, listed
    rows = listed.json()
    assert [r["backup_id"] for r in rows] == [first["backup_id"], second_id]
    assert set(rows[0]) >= {
        "backup_id",
        "volume_id",
        "backend",
        "created",
        "size",
        "bytes_stored",
        "strategy",
        "incremental",
        "parent",
    }
    assert rows[1]["incremental"] is True and rows[1]["parent"] == first["backup_id"]
    assert rows[1]["bytes_stored"] < 2 * MiB and isinstance(rows[0]["created"], float)
    assert second_id in text_list.out and "snapshot-stream" in text_list.out
    assert verified.code == 0 and verified.out.strip().endswith(": OK"), verified
    assert copy.code == 0, copy
    assert copy.json()["volume_id"] == "vol-copy" and copy.json()["strategy"] == "stream-in"
    assert in_place.code == 0 and in_place.err == "", in_place
    assert (volumes / "vol-copy").read_bytes() == changed
    assert vol.read_bytes() == original

    deleted = run("delete", first["backup_id"], "--json")
    assert deleted.code == 0, deleted
    assert deleted.json()["chunks_deleted"] == 1  # the old version of the changed chunk
    after, gc, volumes_list = run_all(
        [["list", "--json"], ["gc", "--dry-run"], ["volumes", "--json"]]
    )
    assert {v["volume_id"]: v["size"] for v in volumes_list.json()} == {
        "vol-1": 8 * MiB,
        "vol-copy": 8 * MiB,
    }
    assert [r["backup_id"] for r in after.json()] == [second_id]
    assert gc.code == 0 and "would remove 0 unreferenced chunk objects" in gc.out, gc


def test_unknown_volume_backup_and_bad_ids_are_clear_errors(
    run: Run, call: Call, home: Path
) -> None:
    """Unknown volume/backup exit 3 naming what exists; a malformed id exits 2.

    The unknown volume through the console script, the rest in-process.
    """
    write_volume(home / "volumes", "vol-1", MiB)
    volume = run("backup", "--volume", "nope")
    assert volume.code == ExitCode.NOT_FOUND, volume
    assert volume.err == (
        "pieceworks: error: unknown volume 'nope' on backend 'local' (volumes: vol-1)\n"
    )
    for command in ("verify", "restore", "delete"):
        r = call(command, "bk-nope")
        assert r.code == ExitCode.NOT_FOUND, r
        assert r.err.startswith("pieceworks: error: no backup 'bk-nope' in the store"), r
        assert r.err.count("\n") == 1
    bad = call("restore", "../../etc/passwd")
    assert bad.code == ExitCode.USAGE and "invalid backup id" in bad.err, bad


def test_corruption_is_found_by_verify_and_stops_restore(
    run: Run, run_all: RunAll, home: Path
) -> None:
    """A damaged chunk: verify exits 1 naming its offset, restore exits 4; a damaged
    manifest makes list exit 4."""
    write_volume(home / "volumes", "vol-1", 2 * MiB)
    made = run("backup", "--volume", "vol-1", "--chunk-size", "1MiB", "--json")
    assert made.code == 0, made
    backup_id = made.json()["backup_id"]
    chunks = sorted((home / "backups" / "chunks").rglob("*"))
    victim = next(p for p in chunks if p.is_file())
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))

    verify, restore = run_all(
        [["verify", backup_id, "--no-quarantine"], ["restore", backup_id, "--volume", "x"]]
    )
    assert verify.code == ExitCode.FAILED, verify
    assert "1 problem(s)" in verify.out and "offset " in verify.out, verify
    assert restore.code == ExitCode.CORRUPT, restore
    last = restore.err.strip().splitlines()[-1]  # after any progress lines
    assert last.startswith(f"pieceworks: error: backup {backup_id}: chunk "), restore
    assert " at offset " in last, restore
    assert "Traceback" not in restore.err
    assert not (home / "volumes" / "x").exists()

    manifest = home / "backups" / "manifests" / f"{backup_id}.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"vol-1"', b'"vol-2"'))
    listed = run("list")
    assert listed.code == ExitCode.CORRUPT, listed
    assert "checksum does not match" in listed.err
    assert os.path.exists(manifest)
