"""The file driver on real files: capabilities, sparseness, isolation, safety."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from pieceworks import failpoints
from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    Extent,
    IAllocatedExtents,
    InvalidName,
    IReplicateToPeer,
    ISnapshot,
    IStreamIn,
    IStreamOut,
    ShortRead,
    SnapshotNotFound,
    SnapshotRef,
    Source,
    VolumeNotFound,
    VolumeRef,
    verify_driver,
)
from tests.support import volume_checks as checks
from tests.support.volume_checks import stray_files

MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture
def driver(root: Path) -> FileDriver:
    return FileDriver(root)


# -- configuration and capabilities -------------------------------------------


def test_unknown_options_are_rejected_by_name(tmp_path: Path) -> None:
    """A misspelt option is a ConfigError that names it, not silently ignored."""
    checks.unknown_options_are_named(FileDriver, tmp_path)


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    """The volume directory must exist; the driver does not invent one."""
    checks.missing_directory_is_refused(FileDriver, tmp_path / "absent")


def test_every_capability_verifies(driver: FileDriver) -> None:
    """zope.interface accepts the instance for each capability, and so does verify_driver."""
    every = {ISnapshot, IStreamOut, IStreamIn, IAllocatedExtents, IReplicateToPeer}
    for iface in every:
        assert verifyObject(iface, driver)
    assert set(verify_driver(driver, "x")) == every


# -- stream-in and stream-out --------------------------------------------------


def test_write_then_read_round_trip(driver: FileDriver) -> None:
    """Bytes written and committed read back identically; the volume is listed."""
    data = os.urandom(3 * MiB + 17)
    driver.write_volume(VolumeRef("vol-1"), data)
    assert driver.read_range(VolumeRef("vol-1"), 0, len(data)) == data
    assert driver.list_volumes() == [VolumeRef("vol-1")]
    reader = driver.open_read(VolumeRef("vol-1"))
    try:
        assert reader.size == len(data)
    finally:
        reader.close()
    reader.close()  # idempotent


def test_readinto_at_fills_a_slice_of_a_reused_buffer(driver: FileDriver) -> None:
    """readinto_at writes straight into the caller's memoryview, at any offset."""
    data = os.urandom(2 * MiB)
    driver.write_volume(VolumeRef("v"), data)
    buffer = bytearray(4 * MiB)
    reader = driver.open_read(VolumeRef("v"))
    try:
        assert reader.readinto_at(MiB, memoryview(buffer)[MiB : 2 * MiB]) == MiB
    finally:
        reader.close()
    assert buffer[MiB : 2 * MiB] == data[MiB:]


def test_short_read_only_at_end(driver: FileDriver) -> None:
    """A read that crosses the end returns what is left; a read past it returns 0."""
    driver.write_volume(VolumeRef("v"), b"0123456789")
    buffer = bytearray(8)
    reader = driver.open_read(VolumeRef("v"))
    try:
        assert reader.readinto_at(6, memoryview(buffer)) == 4
        assert buffer[:4] == b"6789"
        assert reader.readinto_at(10, memoryview(buffer)) == 0
        assert reader.readinto_at(99, memoryview(buffer)) == 0
    finally:
        reader.close()


def test_commit_replaces_with_exact_size_and_zeros(driver: FileDriver, root: Path) -> None:
    """After commit the volume is `size` bytes: what was written, zeros elsewhere."""
    checks.commit_replaces_with_exact_size(driver, root, old_size=100, size=10, tail=8)


def test_previous_volume_intact_until_commit(driver: FileDriver) -> None:
    """While a writer is open the old content is what readers see; a reader opened
    before the commit keeps reading the old file."""
    checks.old_volume_readable_until_commit(driver, b"old!", b"new!")


def test_a_new_volume_another_writer_made_is_not_replaced(driver: FileDriver, root: Path) -> None:
    checks.a_new_volume_made_meanwhile_is_not_replaced(driver, root, b"first", b"second")


def test_a_replaced_volume_keeps_its_mode(driver: FileDriver, root: Path) -> None:
    checks.a_replaced_volume_keeps_its_mode(driver, root / "shared", b"first", b"second")


def test_abort_leaves_old_volume_and_no_temp_files(driver: FileDriver, root: Path) -> None:
    """abort discards everything written; it is idempotent and leaves no temp file."""
    checks.abort_keeps_old_volume(driver, root, b"keep me", read=100)


def test_abort_of_a_new_volume_creates_nothing(driver: FileDriver) -> None:
    """An aborted first write leaves no volume at all."""
    driver.open_write(VolumeRef("new"), 10).abort()
    assert driver.list_volumes() == []
    with pytest.raises(VolumeNotFound):
        driver.open_read(VolumeRef("new"))


def test_write_beyond_size_is_refused(driver: FileDriver) -> None:
    """A writer never makes the volume longer than the size it was opened with."""
    checks.write_beyond_size_is_refused(driver, 4)


# -- allocated-extents and sparse files -----------------------------------------


def test_sparse_volume_extents_and_sparse_snapshot(driver: FileDriver, root: Path) -> None:
    """An 8 GiB volume with 4 MiB of data reports just that data; its snapshot stays sparse
    and unchanged when the volume is written afterwards."""
    volume = VolumeRef("big")
    writer = driver.open_write(volume, 8 * GiB)
    writer.write_at(0, b"\1" * MiB)
    writer.write_at(3 * GiB, b"\2" * (2 * MiB))
    writer.write_at(8 * GiB - MiB, b"\3" * MiB)
    writer.commit()
    expected = [Extent(0, MiB), Extent(3 * GiB, 2 * MiB), Extent(8 * GiB - MiB, MiB)]
    assert list(driver.allocated_extents(volume)) == expected
    assert driver.allocated_bytes(volume) == 4 * MiB

    snapshot = driver.create_snapshot(volume, "snap-1")
    path = root.joinpath(".snapshots", "big", "snap-1")
    assert path.stat().st_size == 8 * GiB
    assert path.stat().st_blocks * 512 <= 5 * MiB  # sparse, not 8 GiB of zeros
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert list(driver.allocated_extents(snapshot)) == expected

    with open(root / "big", "r+b") as live:  # a live writer, in place
        live.seek(3 * GiB)
        live.write(b"\7" * MiB)
        live.seek(5 * GiB)
        live.write(b"\7" * MiB)
    assert driver.read_range(snapshot, 3 * GiB, 4) == b"\2\2\2\2"
    assert driver.read_range(snapshot, 5 * GiB, 4) == b"\0\0\0\0"
    assert driver.read_range(snapshot, 8 * GiB - 4, 8) == b"\3\3\3\3"
    assert list(driver.allocated_extents(snapshot)) == expected
    assert driver.read_range(volume, 5 * GiB, 1) == b"\7"


def test_extents_of_empty_and_hole_only_volumes(driver: FileDriver) -> None:
    """A volume with no data has no extents, whatever its size."""
    checks.hole_only_volumes_have_no_extents(driver)


# -- snapshot --------------------------------------------------------------------


def test_snapshot_isolated_from_later_writes(driver: FileDriver, root: Path) -> None:
    """A snapshot keeps its content when the volume is written in place or replaced."""
    volume = VolumeRef("v")
    driver.write_volume(volume, b"A" * 10_000)
    snapshot = driver.create_snapshot(volume, "s1")
    with open(root / "v", "r+b") as live:
        live.write(b"B" * 5_000)
    assert driver.read_range(snapshot, 0, 20_000) == b"A" * 10_000
    driver.write_volume(volume, b"C")
    assert driver.read_range(snapshot, 0, 20_000) == b"A" * 10_000
    assert driver.read_range(volume, 0, 10) == b"C"


def test_temporary_snapshot_is_deleted(driver: FileDriver) -> None:
    """The free temporary_snapshot context deletes the snapshot even on error."""
    driver.write_volume(VolumeRef("v"), b"data")
    with pytest.raises(RuntimeError), driver.temporary_snapshot(VolumeRef("v")) as snapshot:
        assert driver.read_range(snapshot, 0, 4) == b"data"
        raise RuntimeError
    with pytest.raises(SnapshotNotFound):
        driver.open_read(snapshot)


def test_deleting_a_volume_removes_its_empty_snapshot_folder(
    driver: FileDriver, root: Path
) -> None:
    """`check-driver --backend` left an empty ``.snapshots/pwt-...`` folder behind for each
    scratch volume it removed; a folder still holding a snapshot stays with it."""
    for volume_id in ("gone", "kept"):
        driver.write_volume(VolumeRef(volume_id), b"x" * 512)
    driver.delete_snapshot(driver.create_snapshot(VolumeRef("gone"), "s1"))
    kept = driver.create_snapshot(VolumeRef("kept"), "s2")
    driver.delete_volume("gone")
    driver.delete_volume("kept")
    assert sorted(p.name for p in (root / ".snapshots").iterdir()) == ["kept"]
    assert driver.read_range(kept, 0, 1) == b"x"


def test_delete_snapshot_is_idempotent(driver: FileDriver) -> None:
    """Deleting twice, or deleting a snapshot that never existed, is not an error."""
    driver.write_volume(VolumeRef("v"), b"data")
    snapshot = driver.create_snapshot(VolumeRef("v"), "s1")
    driver.delete_snapshot(snapshot)
    driver.delete_snapshot(snapshot)
    driver.delete_snapshot(SnapshotRef("never", "made"))
    with pytest.raises(SnapshotNotFound, match=r"^no snapshot 's1' of volume 'v'$"):
        driver.open_read(snapshot)  # was "no snapshot SnapshotRef(volume_id='v', ...)"


def test_snapshot_of_unknown_volume_leaves_nothing(driver: FileDriver, root: Path) -> None:
    """VolumeNotFound, and no snapshot directory or temp file is left behind."""
    with pytest.raises(VolumeNotFound):
        driver.create_snapshot(VolumeRef("ghost"), "s1")
    assert list(root.rglob("*")) == []


def test_existing_snapshot_is_never_clobbered(driver: FileDriver, root: Path) -> None:
    """Reusing a snapshot id fails with BackendError and keeps the first snapshot."""
    driver.write_volume(VolumeRef("v"), b"first")
    snapshot = driver.create_snapshot(VolumeRef("v"), "s1")
    driver.write_volume(VolumeRef("v"), b"second")
    with pytest.raises(BackendError):
        driver.create_snapshot(VolumeRef("v"), "s1")
    assert driver.read_range(snapshot, 0, 10) == b"first"
    assert stray_files(root) == []


# -- names, errors, safety -------------------------------------------------------------


def test_unknown_ids_raise_the_right_not_found(driver: FileDriver) -> None:
    """Each kind of missing thing has its own NotFound subclass."""
    driver.write_volume(VolumeRef("v"), b"x")
    checks.unknown_ids_raise_their_not_found(driver)


@pytest.mark.parametrize("bad", ["..", "../etc", "a/b", ".snapshots", "", "x" * 129, "/abs"])
def test_bad_ids_are_invalid_names(driver: FileDriver, bad: str) -> None:
    """Ids that could escape the directory are refused before touching the filesystem."""
    driver.write_volume(VolumeRef("v"), b"x")
    checks.bad_ids_are_invalid_names(driver, bad, 1)


def test_symlinked_volume_is_refused(driver: FileDriver, tmp_path: Path, root: Path) -> None:
    """A volume path that is a symlink to a file outside is neither read nor written."""
    outside = tmp_path / "secret"
    outside.write_bytes(b"top secret")
    (root / "link").symlink_to(outside)
    checks.symlinked_volume_is_refused(driver, VolumeRef("link"), 4)
    assert outside.read_bytes() == b"top secret"


def test_symlinked_snapshot_directory_is_refused(
    driver: FileDriver, tmp_path: Path, root: Path
) -> None:
    """Snapshots are never written through a symlinked directory leading outside."""
    outside = checks.link_outside(root, ".snapshots", tmp_path / "elsewhere")
    driver.write_volume(VolumeRef("v"), b"x")
    with pytest.raises(InvalidName):
        driver.create_snapshot(VolumeRef("v"), "s1")
    with pytest.raises(InvalidName):
        driver.delete_snapshot(SnapshotRef("v", "s1"))
    assert list(outside.iterdir()) == []


def test_fifo_at_volume_path_is_not_a_volume(driver: FileDriver, root: Path) -> None:
    """A non-regular file is not a volume, and opening it does not hang."""
    checks.fifo_is_not_a_volume(driver, root / "pipe", VolumeRef("pipe"))


def test_volume_helpers(driver: FileDriver) -> None:
    """create_volume refuses to overwrite; list is sorted; delete_volume is idempotent."""
    driver.create_volume("b", 10)
    driver.create_volume("a", 10)
    with pytest.raises(BackendError):
        driver.create_volume("a", 20)
    assert driver.list_volumes() == [VolumeRef("a"), VolumeRef("b")]
    driver.delete_volume("a")
    driver.delete_volume("a")
    assert driver.list_volumes() == [VolumeRef("b")]


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A directory on another file system than `tmp_path` (a 16 MiB tmpfs; needs root)."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_native_copy_to_another_file_system_is_made_through_memory(
    root: Path, other_fs: Path
) -> None:
    """Two file backends on different file systems: the native copy failed with 'Invalid
    cross-device link' (copy_file_range refuses across them), so every replication between
    them fell back to streaming. Now the extents are copied through memory, holes kept."""
    head, tail = os.urandom(MiB), os.urandom(MiB)
    data = head + bytes(2 * MiB) + tail
    source = FileDriver(other_fs)
    writer = source.open_write(VolumeRef("v"), len(data))
    writer.write_at(0, head)
    writer.write_at(3 * MiB, tail)  # a 2 MiB hole between
    writer.commit()
    peer = BackendSpec("b", "file", {"path": str(root)})
    copied = source.replicate_to(VolumeRef("v"), peer, VolumeRef("w"))
    assert copied.size == len(data)
    assert (root / "w").read_bytes() == data
    assert os.stat(root / "w").st_blocks * 512 < len(data)  # the hole stayed a hole


# -- a source that shrinks while it is copied (snapshot, native replica) -------


def _two_extents(driver: FileDriver, root: Path) -> Path:
    """Volume 'v' of 3 MiB: random data in [0, 1 MiB) and [2 MiB, 3 MiB), a hole between."""
    driver.create_volume("v", 3 * MiB)
    with open(root / "v", "r+b") as f:
        f.write(os.urandom(MiB))
        f.seek(2 * MiB)
        f.write(os.urandom(MiB))
    return root / "v"


class _ShrinksWhenOpened(FileDriver):
    """A file driver whose volume 'v' loses its tail right after it is opened to be read."""

    def _open_source(self, source: Source) -> tuple[int, int]:
        opened = super()._open_source(source)
        os.truncate(os.path.join(self.root, "v"), MiB + 10)
        return opened


@pytest.fixture
def first_piece_pauses() -> Iterator[None]:
    """The copy of a snapshot or native replica pauses 3 s after its first piece."""
    failpoints.configure("file.piece-copied=sleep:3000")
    try:
        yield
    finally:
        failpoints.configure("")


def _truncate_once_copying(tmp_dir: Path, volume: Path, length: int) -> threading.Thread:
    """Truncate `volume` to `length` once a temporary copy under `tmp_dir` holds data."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(p.stat().st_blocks for p in tmp_dir.rglob("*") if p.is_file()):
                os.truncate(volume, length)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("first_piece_pauses")
def test_a_snapshot_of_a_volume_truncated_mid_copy_fails(driver: FileDriver, root: Path) -> None:
    """The source shrinks after the first extent is copied: ShortRead, no snapshot, no temp."""
    volume = _two_extents(driver, root)
    (root / ".snapshots" / "v").mkdir(parents=True)
    thread = _truncate_once_copying(root / ".snapshots", volume, 2 * MiB + 10)
    with pytest.raises(ShortRead) as err:
        driver.create_snapshot(VolumeRef("v"), "s1")
    thread.join()
    assert str(err.value) == (
        f"short read of volume 'v' at offset {2 * MiB + 10}: the file ends there, before its"
        f" size {3 * MiB} when the copy began"
    )
    assert os.listdir(root / ".snapshots" / "v") == []
    assert stray_files(root) == []


def test_a_snapshot_of_a_volume_shrunk_before_its_extents_are_listed_fails(root: Path) -> None:
    """Shrunk between open and copy (extents then end early): ShortRead, not a zero tail."""
    driver = _ShrinksWhenOpened(root)
    _two_extents(driver, root)
    with pytest.raises(ShortRead) as err:
        driver.create_snapshot(VolumeRef("v"), "s1")
    assert str(err.value) == (
        f"short read of volume 'v': the file holds {MiB + 10} bytes, fewer than its size"
        f" {3 * MiB} when the copy began"
    )
    assert os.listdir(root / ".snapshots" / "v") == []
    assert stray_files(root) == []


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("first_piece_pauses")
def test_a_native_replica_of_a_volume_truncated_mid_copy_fails(
    driver: FileDriver, root: Path, tmp_path: Path
) -> None:
    """replicate_to on a shrinking source: ShortRead, the peer keeps no volume and no temp."""
    volume = _two_extents(driver, root)
    peer_root = tmp_path / "peer"
    peer_root.mkdir()
    peer = BackendSpec("peer", "file", {"path": str(peer_root)})
    thread = _truncate_once_copying(peer_root, volume, 2 * MiB + 10)
    with pytest.raises(ShortRead, match=f"short read of volume 'v' at offset {2 * MiB + 10}"):
        driver.replicate_to(VolumeRef("v"), peer, VolumeRef("w"))
    thread.join()
    assert not (peer_root / "w").exists()
    assert stray_files(peer_root) == []


def test_a_full_disk_names_the_volume_being_written(tmp_path: Path) -> None:
    """A restore into a volume on a full file system said only "write failed at offset
    2097152: No space left on device", not which volume."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        writer = FileDriver(small).open_write(VolumeRef("vol-9"), 1024 * 1024)
        try:
            with pytest.raises(BackendError, match=r"cannot write volume 'vol-9': .*No space"):
                writer.write_at(0, os.urandom(1024 * 1024))
        finally:
            writer.abort()
        assert list(small.iterdir()) in ([], [small / ".incoming"])
    finally:
        subprocess.run(["umount", str(small)], check=False)
