"""``restore --to-file DEVICE`` on a device it cannot or did not write says so, truly.

A read-only block device (``losetup -r``, ``blockdev --setro``) opens for
writing and fails each write (EPERM): the restore read the backup, then
failed with exit 1 and "block device ... is partly written" although not a
byte was written. It is now refused before any chunk is read, as a usage
error naming the device (as a directory that cannot be written is), and a
restore that fails before its first write says the device was not changed.
Real loop devices, as root (as tests/cli/test_restore_to_file.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Run, write_volume

KiB = 1024


def _losetup(*args: str) -> str:
    losetup = shutil.which("losetup")
    assert losetup is not None, "losetup (util-linux) is needed for the block device tests"
    done = subprocess.run([losetup, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    """A 1 MiB file of 0xAA bytes under the loop devices."""
    path = tmp_path / "disk.img"
    path.write_bytes(b"\xaa" * (1024 * KiB))
    return path


@pytest.fixture
def read_only_device(backing: Path) -> Iterator[str]:
    device = _losetup("-r", "-f", "--show", str(backing))
    try:
        yield device
    finally:
        _losetup("-d", device)


@pytest.fixture
def device(backing: Path) -> Iterator[str]:
    device = _losetup("-f", "--show", str(backing))
    try:
        yield device
    finally:
        _losetup("-d", device)


def _backup(run: Run, home: Path) -> str:
    write_volume(home / "volumes", "vol-1", 256 * KiB)
    made = run("backup", "--volume", "vol-1", "--json", "-q")
    assert made.code == 0, made
    return str(made.json()["backup_id"])


def test_a_read_only_device_is_refused_before_anything_is_read(
    run: Run, home: Path, read_only_device: str, backing: Path
) -> None:
    backup_id = _backup(run, home)
    done = run("restore", backup_id, "--to-file", read_only_device, "--overwrite", "--json")
    assert done.code == 2 and done.out == "", done
    doc = json.loads(done.err.strip().splitlines()[-1])
    assert doc["reference"] == "usage-error", doc
    assert doc["message"] == f"cannot restore to {read_only_device}: the block device is read-only"
    assert "partly written" not in done.err, done
    assert backing.read_bytes() == b"\xaa" * (1024 * KiB)
    text = run("restore", backup_id, "--to-file", read_only_device, "--overwrite")
    assert text.code == 2 and "read-only" in text.err, text


def test_a_restore_that_fails_before_its_first_write_says_the_device_was_not_changed(
    run: Run, home: Path, device: str, backing: Path
) -> None:
    backup_id = _backup(run, home)
    [chunk] = [p for p in (home / "backups" / "chunks").rglob("*") if p.is_file()]
    chunk.write_bytes(b"damaged" + chunk.read_bytes()[7:])
    done = run("restore", backup_id, "--to-file", device, "--overwrite")
    assert done.code == 4, done
    assert f"block device {device} was not changed" in done.err, done
    assert "partly written" not in done.err, done
    assert backing.read_bytes() == b"\xaa" * (1024 * KiB)
