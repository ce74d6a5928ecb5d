"""``restore BACKUP_ID --to-file PATH`` end to end: sparse files, block devices, refusals.

The block device is a real loop device (``losetup``, as root) over a file
filled with old data, so that holes must be written as zeros.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols.chunks import chunk_key
from tests.cli.conftest import Run, RunAll
from tests.support.backups import make_backup

KiB = 1024


def _volume_with_holes(home: Path) -> bytes:
    """256 KiB of data, 256 KiB of zeros, 64 KiB of data: a backup with holes."""
    data = os.urandom(256 * KiB) + bytes(256 * KiB) + os.urandom(64 * KiB)
    (home / "volumes").mkdir(parents=True, exist_ok=True)
    (home / "volumes" / "vol-1").write_bytes(data)
    return data


def test_restore_to_a_new_file_is_sparse_and_exact(run: Run, home: Path, tmp_path: Path) -> None:
    data = _volume_with_holes(home)
    done = make_backup(home, "vol-1", fresh=False)
    target = tmp_path / "out" / "restored.img"
    target.parent.mkdir()
    result = run("restore", done.backup_id, "--to-file", str(target), "--json")
    assert result.code == 0, result
    assert target.read_bytes() == data
    doc = result.json()
    assert doc["path"] == str(target) and doc["target"] == "file" and doc["sparse"] is True
    assert doc["size"] == len(data) and doc["bytes_written"] == 320 * KiB
    assert target.stat().st_blocks * 512 < len(data)  # the hole was not written
    assert os.listdir(target.parent) == ["restored.img"]  # no temporary file left


def test_an_existing_path_is_refused_unless_overwrite(
    run: Run, run_all: RunAll, home: Path, tmp_path: Path
) -> None:
    data = _volume_with_holes(home)
    done = make_backup(home, "vol-1", fresh=False)
    existing = tmp_path / "existing.img"
    existing.write_bytes(b"keep me")
    refused, directory, chardev, no_parent, both, stray = run_all(
        timeout=300,
        commands=[
            ["restore", done.backup_id, "--to-file", str(existing)],
            ["restore", done.backup_id, "--to-file", str(tmp_path), "--overwrite"],
            ["restore", done.backup_id, "--to-file", "/dev/null", "--overwrite"],
            ["restore", done.backup_id, "--to-file", str(tmp_path / "no" / "such" / "f")],
            ["restore", done.backup_id, "--to-file", str(tmp_path / "f"), "--volume", "v"],
            ["restore", done.backup_id, "--overwrite"],
        ],
    )
    assert refused.code == ExitCode.USAGE and "add --overwrite" in refused.err, refused
    assert existing.read_bytes() == b"keep me"
    assert directory.code == ExitCode.USAGE and "is a directory" in directory.err, directory
    assert chardev.code == ExitCode.USAGE and "not a regular file" in chardev.err, chardev
    assert no_parent.code == ExitCode.USAGE and "does not exist" in no_parent.err, no_parent
    assert both.code == ExitCode.USAGE and "exclude each other" in both.err, both
    # without --to-file or --volume, restore makes a new volume: --overwrite replaces nothing
    assert stray.code == ExitCode.OK and "into new volume" in stray.out, stray
    replaced = run("restore", done.backup_id, "--to-file", str(existing), "--overwrite")
    assert replaced.code == 0, replaced
    assert existing.read_bytes() == data


def test_a_damaged_chunk_stops_the_restore_and_leaves_no_file(
    run: Run, home: Path, tmp_path: Path
) -> None:
    _volume_with_holes(home)
    done = make_backup(home, "vol-1", fresh=False)
    digest = read_manifest(PosixStore(home / "backups"), done.backup_id).chunks[-1].digest
    obj = home / "backups" / chunk_key(digest)
    damaged = bytearray(obj.read_bytes())
    damaged[-1] ^= 0xFF
    obj.write_bytes(bytes(damaged))
    target = tmp_path / "out"
    target.mkdir()
    result = run("restore", done.backup_id, "--to-file", str(target / "r.img"))
    assert result.code == ExitCode.CORRUPT, result
    assert "was not created or changed" in result.err and str(512 * KiB) in result.err
    assert os.listdir(target) == []


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real loop block device over a 1 MiB file of 0xAA bytes (needs root and losetup)."""
    losetup = shutil.which("losetup")
    assert losetup is not None, "losetup (util-linux) is needed for the block device test"
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"\xaa" * (1024 * KiB))
    device = subprocess.run(
        [losetup, "-f", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield device, backing
    finally:
        subprocess.run([losetup, "-d", device], check=False)


def test_restore_onto_a_block_device_writes_holes_as_zeros(
    run: Run, home: Path, loop_device: tuple[str, Path]
) -> None:
    device, backing = loop_device
    data = _volume_with_holes(home)
    done = make_backup(home, "vol-1", fresh=False)
    refused = run("restore", done.backup_id, "--to-file", device)
    assert refused.code == ExitCode.USAGE and "(block device)" in refused.err, refused
    result = run("restore", done.backup_id, "--to-file", device, "--overwrite", "--json")
    assert result.code == 0, result
    assert result.json()["target"] == "block-device" and result.json()["sparse"] is False
    with open(device, "rb") as f:
        assert f.read(len(data)) == data
    assert backing.read_bytes()[len(data) :] == b"\xaa" * (1024 * KiB - len(data))
    # The holes were written (as zeros): bytes_written counted the data only.
    assert result.json()["bytes_written"] == len(data), result
    text = run("restore", done.backup_id, "--to-file", device, "--overwrite")
    assert "written   576.0 KiB (320.0 KiB of data, holes written as zeros)" in text.out, text


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 128 KiB file system (tmpfs; needs root, as the loop device does)."""
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_is_a_clear_error_naming_the_file(run: Run, home: Path, small_fs: Path) -> None:
    """A file system that fills up mid-restore ended in 'unexpected OSError: No space
    left on device' (reference unexpected-error); now the error names the file and the
    reason, exit 1, and nothing is left behind."""
    _volume_with_holes(home)
    done = make_backup(home, "vol-1", fresh=False)
    target = small_fs / "restored.img"
    result = run("restore", done.backup_id, "--to-file", str(target), "--json")
    assert result.code == ExitCode.FAILED, result
    error = json.loads(result.err.strip().splitlines()[-1])
    assert error["reference"] != "unexpected-error", error
    assert f"cannot write {target}: No space left on device" in error["message"], error
    assert list(small_fs.iterdir()) == []
    assert not [p for p in (home / "journal").rglob("*") if p.is_file()]


def test_an_overwritten_file_keeps_its_mode(run: Run, home: Path, tmp_path: Path) -> None:
    """--overwrite of a 0600 image made it 0644 (readable by every user): the file's
    mode is kept; a new file is 0644 less the umask, as before."""
    data = _volume_with_holes(home)
    done = make_backup(home, "vol-1", fresh=False)
    private = tmp_path / "private.img"
    private.write_bytes(b"old")
    private.chmod(0o600)
    result = run("restore", done.backup_id, "--to-file", str(private), "--overwrite")
    assert result.code == 0, result
    assert private.read_bytes() == data
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
