"""Checks that the file and the qcow2 driver must pass the same way, and their helpers.

Each check takes the driver under test and the sizes it can hold (qcow2
volumes are whole 512-byte sectors, file volumes any size) and asserts the
same things for both; the test modules keep their own test functions, names
and docstrings, and call these (``checks.hole_only_volumes_have_no_extents(driver)``)
for the shared part. `stray_files` and `link_outside` are small helpers both
test modules use.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.qcow2 import Qcow2Driver
from pieceworks.protocols import (
    ConfigError,
    InvalidName,
    NotFound,
    SnapshotNotFound,
    SnapshotRef,
    VolumeExists,
    VolumeNotFound,
    VolumeRef,
)

#: The volume drivers that keep their volumes as files in one directory.
DirectoryDriver = FileDriver | Qcow2Driver

GiB = 1 << 30


def stray_files(root: Path) -> list[str]:
    """Temporary files the driver may have left behind under `root`."""
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.parent.name == ".incoming" or p.name.startswith(".tmp-")
    ]


def link_outside(root: Path, name: str, outside: Path) -> Path:
    """Make ``<root>/<name>`` a symbolic link to `outside`, a new empty directory."""
    outside.mkdir()
    (root / name).symlink_to(outside)
    return outside


def unknown_options_are_named(driver_class: Callable[..., object], path: Path) -> None:
    """A misspelt option is a ConfigError that names it, not silently ignored."""
    with pytest.raises(ConfigError, match="colour, speed"):
        driver_class(path, speed=1, colour="red")


def missing_directory_is_refused(driver_class: Callable[..., object], path: Path) -> None:
    """The volume directory (`path`, which does not exist) is not invented."""
    with pytest.raises(ConfigError, match="not a directory"):
        driver_class(path)


def commit_replaces_with_exact_size(
    driver: DirectoryDriver, root: Path, old_size: int, size: int, tail: int
) -> None:
    """A volume of `old_size` bytes replaced by a writer of `size` bytes that wrote ``ab``
    at 2 and ``yz`` at `tail` reads as just that, zeros elsewhere; no temporary file is
    left behind."""
    driver.write_volume(VolumeRef("v"), b"x" * old_size)
    writer = driver.open_write(VolumeRef("v"), size)
    writer.write_at(2, b"ab")
    writer.write_at(tail, memoryview(b"yz"))
    writer.commit()
    expected = b"\0\0ab" + bytes(tail - 4) + b"yz" + bytes(size - tail - 2)
    assert driver.read_range(VolumeRef("v"), 0, old_size) == expected
    assert stray_files(root) == []


def old_volume_readable_until_commit(driver: DirectoryDriver, old: bytes, new: bytes) -> None:
    """While a writer is open the old content (`old`) is what readers see; a reader
    opened before the commit of `new` keeps reading the old volume after it."""
    volume = VolumeRef("v")
    driver.write_volume(volume, old)
    writer = driver.open_write(volume, len(new))
    writer.write_at(0, new)
    assert driver.read_range(volume, 0, 4) == old[:4]
    reader = driver.open_read(volume)
    try:
        writer.commit()
        assert driver.read_range(volume, 0, 4) == new[:4]
        buffer = bytearray(4)
        reader.readinto_at(0, memoryview(buffer))
        assert buffer == old[:4]
    finally:
        reader.close()


def a_new_volume_made_meanwhile_is_not_replaced(
    driver: DirectoryDriver, root: Path, first: bytes, second: bytes
) -> None:
    """Two writers of one new volume (two restores into one new name): the first to
    commit makes it; the second's commit raises `VolumeExists`, keeps the first's
    content and leaves no temporary file. It used to replace it silently. A writer
    opened on an existing volume (an overwrite) still replaces it."""
    volume = VolumeRef("new")
    one, two = driver.open_write(volume, len(first)), driver.open_write(volume, len(second))
    one.write_at(0, first)
    two.write_at(0, second)
    one.commit()
    with pytest.raises(VolumeExists, match="was created by another run while this one wrote"):
        two.commit()
    assert driver.read_range(volume, 0, len(first)) == first
    assert stray_files(root) == []
    driver.write_volume(volume, second)  # it exists now: replaced on purpose
    assert driver.read_range(volume, 0, len(second)) == second


def a_replaced_volume_keeps_its_mode(
    driver: DirectoryDriver, path: Path, first: bytes, second: bytes
) -> None:
    """A volume replaced by a writer (restore --overwrite, a replication onto it) keeps
    the permission bits it had: they became 0600, those of the temporary file, so a VM
    disk shared with a group (0640, 0660) was locked away from its hypervisor."""
    volume = VolumeRef("shared")
    driver.write_volume(volume, first)
    os.chmod(path, 0o640)
    driver.write_volume(volume, second)
    assert driver.read_range(volume, 0, len(second)) == second
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def abort_keeps_old_volume(driver: DirectoryDriver, root: Path, old: bytes, read: int) -> None:
    """abort discards everything written to a 1 GiB writer, is idempotent, and leaves
    no temporary file; the first `read` bytes of the volume are still `old`'s."""
    volume = VolumeRef("v")
    driver.write_volume(volume, old)
    writer = driver.open_write(volume, 1 * GiB)
    writer.write_at(0, b"discard")
    writer.abort()
    writer.abort()
    assert driver.read_range(volume, 0, read) == old[:read]
    assert stray_files(root) == []


def write_beyond_size_is_refused(driver: DirectoryDriver, size: int) -> None:
    """A writer opened for `size` bytes refuses a write that would end past them."""
    writer = driver.open_write(VolumeRef("v"), size)
    try:
        with pytest.raises(ValueError, match="beyond size"):
            writer.write_at(size - 2, b"abc")
    finally:
        writer.abort()


def hole_only_volumes_have_no_extents(driver: DirectoryDriver) -> None:
    """A volume with no data has no extents, whatever its size, and reads as zeros."""
    driver.create_volume("empty", 0)
    driver.create_volume("holes", 1 * GiB)
    assert driver.allocated_extents(VolumeRef("empty")) == []
    assert driver.allocated_extents(VolumeRef("holes")) == []
    assert driver.read_range(VolumeRef("holes"), GiB - 3, 10) == b"\0\0\0"


def unknown_ids_raise_their_not_found(
    driver: DirectoryDriver, *more: tuple[Callable[[], object], type[NotFound]]
) -> None:
    """Each kind of missing thing has its own NotFound subclass; volume ``v`` exists.

    `more` are cases of the driver's own, checked after the volume cases.
    """
    _expect_each(
        [
            (lambda: driver.open_read(VolumeRef("nope")), VolumeNotFound),
            (lambda: driver.allocated_extents(VolumeRef("nope")), VolumeNotFound),
            *more,
            (lambda: driver.open_read(SnapshotRef("v", "nope")), SnapshotNotFound),
            (lambda: driver.open_read(SnapshotRef("nope", "nope")), SnapshotNotFound),
            (lambda: driver.allocated_extents(SnapshotRef("v", "nope")), SnapshotNotFound),
        ]
    )


def bad_ids_are_invalid_names(driver: DirectoryDriver, bad: str, size: int) -> None:
    """`bad` is refused as a volume or snapshot id before the filesystem is touched.

    Volume ``v`` exists; `size` is a size the driver can create.
    """
    _expect_raises(
        InvalidName,
        [
            lambda: VolumeRef(bad),
            lambda: SnapshotRef("v", bad),
            lambda: driver.create_snapshot(VolumeRef("v"), bad),
            lambda: driver.create_volume(bad, size),
            lambda: driver.delete_volume(bad),
        ],
    )


def symlinked_volume_is_refused(driver: DirectoryDriver, link: VolumeRef, size: int) -> None:
    """Volume `link`, a symbolic link, is neither read, mapped, snapshotted nor written
    (a writer of `size` bytes), and is not listed."""
    _expect_raises(
        InvalidName,
        [
            lambda: driver.open_read(link),
            lambda: driver.allocated_extents(link),
            lambda: driver.create_snapshot(link, "s"),
            lambda: driver.open_write(link, size),
        ],
    )
    assert driver.list_volumes() == []


def fifo_is_not_a_volume(driver: DirectoryDriver, fifo: Path, volume: VolumeRef) -> None:
    """A FIFO made at `fifo`, where `volume` would be, is no volume; opening it does not
    hang."""
    os.mkfifo(fifo)
    with pytest.raises(VolumeNotFound, match="not a regular file"):
        driver.open_read(volume)
    assert driver.list_volumes() == []


def _expect_raises(error: type[BaseException], calls: Iterable[Callable[[], object]]) -> None:
    """Each of `calls` raises `error`."""
    _expect_each((call, error) for call in calls)


def _expect_each(cases: Iterable[tuple[Callable[[], object], type[BaseException]]]) -> None:
    """Each call of `cases` raises the error paired with it."""
    for call, error in cases:
        with pytest.raises(error):
            call()
