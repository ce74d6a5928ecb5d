"""Bad days at the command line: a damaged store heals, one bad manifest harms only itself.

Each test reproduces a finding of issue 9 with the real ``pieceworks``
command on the built-in backend and store (``$PIECEWORKS_HOME/volumes`` and
``backups``): before the fix, ``backup --incremental`` exited 0 after one
chunk of its parent was damaged, and its backup could not be restored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, MiB, Result, without_dac_override, write_volume

CHUNK = 256 * 1024


def _chunk_object(home: Path, backup_id: str, offset: int) -> tuple[str, Path]:
    """The digest and the file of the chunk at `offset` of a backup (from its manifest)."""
    doc = json.loads((home / "backups" / "manifests" / f"{backup_id}.json").read_bytes())
    [row] = [r for r in doc["manifest"]["chunks"] if r[0] == offset]
    digest = str(row[2])
    return digest, home / "backups" / "chunks" / digest[:2] / digest


def _deleted(path: Path) -> None:
    path.unlink()


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_length(path: Path) -> None:
    path.write_bytes(b"")


def _extended(path: Path) -> None:
    path.write_bytes(path.read_bytes() + os.urandom(100))


def _unreadable(path: Path) -> None:
    path.chmod(0)


def _same_size_garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "deleted": _deleted,
    "truncated": _truncated,
    "zero-length": _zero_length,
    "extended": _extended,
    "unreadable": _unreadable,
    "same-size-garbage": _same_size_garbage,
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_an_incremental_after_damage_restores_byte_for_byte(
    kind: str, call: Call, home: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Six damage kinds to one chunk of the parent: the next incremental is whole again.

    Same-size garbage needs verify first (a stat cannot see it): verify names
    the backup, the chunk and the offset, and moves the object aside.
    """
    vol = write_volume(home / "volumes", "vol-1", 2 * MiB)
    full = call("backup", "--volume", "vol-1", "--chunk-size", "256KiB", "--json")
    assert full.code == ExitCode.OK, full
    first = full.json()["backup_id"]
    digest, path = _chunk_object(home, first, 3 * CHUNK)
    DAMAGE[kind](path)

    if kind == "same-size-garbage":
        checked = call("verify", first)
        assert checked.code == ExitCode.FAILED, checked
        assert f"backup {first} offset {3 * CHUNK}: chunk chunks/{digest[:2]}/{digest}" in (
            checked.out
        )
        assert "corrupt" in checked.out and "moved aside to quarantine/" in checked.out
        assert not path.exists()
        assert len(list((home / "backups" / "quarantine").iterdir())) == 1

    with open(vol, "r+b") as f:  # a change elsewhere, so the incremental has work to do
        f.write(b"changed" * 100)
    args = ["backup", "--volume", "vol-1", "--chunk-size", "256KiB", "--incremental", "--json"]
    incr = without_dac_override(args, env, tmp_path) if kind == "unreadable" else call(*args)
    assert incr.code == ExitCode.OK, incr
    second = incr.json()["backup_id"]

    restored = call("restore", second, "--volume", "copy")
    assert restored.code == ExitCode.OK, restored
    assert (home / "volumes" / "copy").read_bytes() == vol.read_bytes()
    assert call("verify", second).code == ExitCode.OK
    assert path.is_file() and os.access(path, os.R_OK)


def test_restore_of_a_damaged_backup_names_backup_chunk_and_offset(call: Call, home: Path) -> None:
    """Exit 4, and the message says which backup, which chunk object and where in the volume."""
    write_volume(home / "volumes", "vol-1", 1 * MiB)
    first = call("backup", "--volume", "vol-1", "--chunk-size", "256KiB", "--json").json()
    digest, path = _chunk_object(home, first["backup_id"], CHUNK)
    _same_size_garbage(path)
    restored = call("restore", first["backup_id"], "--volume", "copy")
    assert restored.code == ExitCode.CORRUPT, restored
    assert f"backup {first['backup_id']}: chunk {digest} at offset {CHUNK}" in restored.err
    assert not (home / "volumes" / "copy").exists()


def test_one_unreadable_manifest_harms_only_itself(call: Call, home: Path) -> None:
    """list shows the rest and marks it; other volumes back up incrementally; gc refuses."""
    for name in ("vol-a", "vol-b"):
        write_volume(home / "volumes", name, 1 * MiB, seed=len(name))
    a = call("backup", "--volume", "vol-a", "--json").json()["backup_id"]
    b = call("backup", "--volume", "vol-b", "--json").json()["backup_id"]
    manifests = home / "backups" / "manifests"
    (manifests / "bk-junk.json").write_bytes(b"[" * 200_000)
    good = (manifests / f"{a}.json").read_text()
    (manifests / f"{a}.json").write_text(good.replace('"created":', '"created":NaN,"x":', 1))

    listed = call("list", "--json")
    assert listed.code == ExitCode.CORRUPT, listed
    rows = {r["backup_id"]: r for r in listed.json()}
    assert set(rows) == {a, b, "bk-junk"}
    assert rows[b]["volume_id"] == "vol-b" and "unreadable" not in rows[b]
    assert "nested too deeply" in rows["bk-junk"]["unreadable"]
    assert "NaN" in rows[a]["unreadable"]
    text = call("list")
    assert "UNREADABLE" in text.out and b in text.out and "unexpected" not in text.err

    incr = call("backup", "--volume", "vol-b", "--incremental", "--json")
    assert incr.code == ExitCode.OK, incr
    assert incr.json()["parent"] == b

    for bad in (a, "bk-junk"):
        for command in (["verify", bad], ["restore", bad, "--volume", "x"]):
            result = call(*command)
            assert result.code == ExitCode.CORRUPT, result
            assert "unexpected" not in result.err and "Error:" not in result.err

    chunks_before = sorted((home / "backups" / "chunks").rglob("*"))
    gc = call("gc")
    assert gc.code == ExitCode.CORRUPT, gc
    assert "manifests/bk-junk.json" in gc.err and f"manifests/{a}.json" in gc.err
    assert "pieceworks delete" in gc.err
    assert sorted((home / "backups" / "chunks").rglob("*")) == chunks_before

    assert call("delete", "bk-junk").code == ExitCode.CORRUPT  # gc still refuses: a is bad
    assert call("delete", a).code == ExitCode.OK
    assert call("gc").code == ExitCode.OK
    assert call("list").code == ExitCode.OK


def test_prune_with_manifests_replaced_by_a_file_removes_nothing(
    run: Callable[..., Result], home: Path
) -> None:
    """A file where ``backups/manifests`` should be: ``list`` said "no backups", ``check``
    "no problems found", and ``prune`` removed every chunk of the store (exit 0)."""
    from tests.support.backups import make_backup  # noqa: PLC0415

    make_backup(home, "vol-1", seed=1)
    chunks = sorted(p for p in (home / "backups" / "chunks").rglob("*") if p.is_file())
    manifests = home / "backups" / "manifests"
    shutil.rmtree(manifests)
    manifests.write_bytes(b"not a folder")
    for args in (["prune"], ["gc"], ["check"], ["list"], ["stats"], ["forget", "--keep-last", "1"]):
        done = run(*args)
        assert done.code == ExitCode.FAILED, done
        assert f"{manifests}" in done.err and "not a directory" in done.err, done
    assert sorted(p for p in (home / "backups" / "chunks").rglob("*") if p.is_file()) == chunks


def test_prune_and_check_leave_files_that_are_no_chunk_objects_alone(
    run: Callable[..., Result], home: Path
) -> None:
    """``prune`` removed whatever lay under ``chunks/``: a stray file ``chunks/4b`` (where a
    folder should be), a ``README``, an object of another tool; ``check`` counted them as
    unreferenced chunks."""
    from tests.support.backups import make_backup  # noqa: PLC0415

    make_backup(home, "vol-1", seed=1)
    chunks = home / "backups" / "chunks"
    strays = [chunks / "4b", chunks / "ab" / "README", chunks / "ab" / ("ab" * 32 + ".zst")]
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"not a chunk")
    orphan = chunks / "cd" / ("cd" * 32)  # a real unreferenced chunk key: collected
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    check = run("check", "--json")
    assert check.code == ExitCode.OK, check
    assert check.json()["objects_unreferenced"] == 1, check
    done = run("prune", "--json")
    assert done.code == ExitCode.OK, done
    assert done.json()["chunks_deleted"] == 1, done
    assert all(s.read_bytes() == b"not a chunk" for s in strays)
    assert not orphan.exists()


@pytest.fixture
def read_only_store(home: Path, tmp_path: Path) -> Iterator[Path]:
    """`home`'s store (one backup of vol-1 in it) on a file system mounted read-only.

    Yields the configuration file naming it (store ``local``, backend ``local``).
    """
    from tests.support.backups import make_backup  # noqa: PLC0415

    make_backup(home, "vol-1", seed=5)
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        shutil.copytree(home / "backups", mount / "store")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        config = tmp_path / "ro.toml"
        config.write_text(
            f'[backends.local]\ndriver = "file"\npath = "{home / "volumes"}"\n'
            f'[stores.local]\ndriver = "posix"\npath = "{mount / "store"}"\n'
            '[engine]\npersistence = "memory://"\n'
        )
        yield config
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("how", ["to-file", "to-volume", "check"])
def test_a_store_on_a_read_only_file_system_can_be_restored_and_checked(
    run: Callable[..., Result],
    env: dict[str, str],
    home: Path,
    tmp_path: Path,
    read_only_store: Path,
    how: str,
) -> None:
    """A backup disk mounted read-only (or remounted so after errors) could not be
    restored from: 'cannot write .../leases/read.<token>: Read-only file system'."""
    [backup_id] = [p.stem for p in (home / "backups" / "manifests").iterdir()]
    args = {
        "to-file": ["restore", backup_id, "--to-file", str(tmp_path / "image")],
        "to-volume": ["restore", backup_id, "--volume", "vol-1-again"],
        "check": ["check", "--read-data-subset", "100%"],
    }[how]
    done = run(*args, env={**env, "PIECEWORKS_CONFIG": str(read_only_store)})
    assert done.code == ExitCode.OK, done
    assert "read-only file system" in done.err and "without a read lease" in done.err, done
    restored = {"to-file": tmp_path / "image", "to-volume": home / "volumes" / "vol-1-again"}
    if how in restored:
        assert restored[how].read_bytes() == (home / "volumes" / "vol-1").read_bytes()
