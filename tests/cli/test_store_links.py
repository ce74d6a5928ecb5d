"""A manifest put back as a link to a replica's copy: every command sees the same backup."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Call, MiB, write_volume


def test_gc_keeps_the_chunks_of_a_backup_whose_manifest_is_a_link(
    call: Call, home: Path, tmp_path: Path
) -> None:
    """`show` and `restore` read a manifest that is a link (to a copy kept elsewhere), but
    `list`, `check` and `gc` skipped it: gc deleted its chunks and the restore then failed."""
    write_volume(home / "volumes", "vol-1", 2 * MiB)
    backup = call("backup", "--volume", "vol-1", "--json", "--quiet")
    assert backup.code == 0, backup
    backup_id = backup.json()["backup_id"]
    manifest = home / "backups" / "manifests" / f"{backup_id}.json"
    replica = tmp_path / "replica.json"
    manifest.rename(replica)
    manifest.symlink_to(replica)

    listed = call("list", "--json")
    assert [r["backup_id"] for r in listed.json()] == [backup_id], listed
    gc = call("gc", "--json")
    assert gc.code == 0 and gc.json()["chunks_deleted"] == 0, gc
    restored = call("restore", backup_id, "--volume", "copy")
    assert restored.code == 0, restored
    assert (home / "volumes" / "copy").read_bytes() == (home / "volumes" / "vol-1").read_bytes()
