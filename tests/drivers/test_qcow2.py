"""The qcow2 driver on real images with the real qemu-img, qemu-nbd and qemu-io.

Nothing is mocked: every test drives QEMU's tools on files under `tmp_path`.
Install them with ``scripts/install-qemu-utils.sh``. Writes "by a VM" are
made in place with ``qemu-io``, which opens the image the way QEMU does.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from pieceworks.common_algorithms import Backend, BackupRequest, RestoreRequest, Store, backup
from pieceworks.common_algorithms import restore as restore_backup
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.qcow2 import Qcow2Driver
from pieceworks.protocols import (
    BackendError,
    ConfigError,
    Extent,
    IAllocatedExtents,
    InvalidName,
    ISnapshot,
    IStreamIn,
    IStreamOut,
    SnapshotNotFound,
    SnapshotRef,
    StoreSpec,
    VolumeNotFound,
    VolumeRef,
    verify_driver,
)
from tests.support import volume_checks as checks
from tests.support.volume_checks import stray_files

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
CLUSTER = 64 * KiB  # qemu-img's default qcow2 cluster size


@pytest.fixture
def driver(root: Path) -> Qcow2Driver:
    return Qcow2Driver(root)


def mixed(blocks: int = 12, block: int = CLUSTER) -> bytes:
    """Random, zero and log-like text blocks, plus a tail that is not a whole cluster."""
    parts = []
    for i in range(blocks):
        if i % 3 == 0:
            parts.append(os.urandom(block))
        elif i % 3 == 1:
            parts.append(bytes(block))
        else:
            line = f"{i:06d} INFO request served in 3 ms\n".encode()
            parts.append((line * (block // len(line) + 1))[:block])
    return b"".join(parts) + os.urandom(3 * 512)


def qemu_write(image: Path, offset: int, length: int, pattern: int) -> None:
    """Write `length` bytes of `pattern` at `offset` into the image in place, as a VM would."""
    command = f"write -P {pattern} {offset} {length}"
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", command, str(image)],
        check=True,
        capture_output=True,
    )


def image_info(image: Path) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", "-f", "qcow2", str(image)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info: dict[str, object] = json.loads(out)
    return info


def snapshot_names(image: Path) -> list[str]:
    snapshots = image_info(image).get("snapshots", [])
    assert isinstance(snapshots, list)
    return [str(s["name"]) for s in snapshots]


def qemu_nbd_children() -> list[int]:
    """Process ids of live qemu-nbd processes that are children of this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition(") ")
        fields = rest.split()
        if name.endswith("(qemu-nbd") and fields[0] != "Z" and int(fields[1]) == os.getpid():
            found.append(int(entry.name))
    return found


# -- configuration and capabilities ---------------------------------------------


def test_unknown_options_are_rejected_by_name(tmp_path: Path) -> None:
    """A misspelt option is a ConfigError that names it, not silently ignored."""
    checks.unknown_options_are_named(Qcow2Driver, tmp_path)


def test_bad_directory_and_timeout_are_config_errors(tmp_path: Path) -> None:
    """The volume directory must exist, and the timeout must be a positive number."""
    checks.missing_directory_is_refused(Qcow2Driver, tmp_path / "absent")
    for bad in ("soon", 0, -1, "nan"):
        with pytest.raises(ConfigError, match="timeout"):
            Qcow2Driver(tmp_path, timeout=bad)
    assert Qcow2Driver(tmp_path, timeout="2.5").root == str(tmp_path)


def test_missing_qemu_tools_say_how_to_install_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without qemu-img on PATH the driver refuses to start and names the install script."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"qemu-img not found.*install-qemu-utils\.sh"):
        Qcow2Driver(tmp_path)


def test_every_capability_verifies(driver: Qcow2Driver) -> None:
    """zope.interface accepts the instance for each capability, and so does verify_driver."""
    for iface in (ISnapshot, IStreamOut, IStreamIn, IAllocatedExtents):
        assert verifyObject(iface, driver)
    assert set(verify_driver(driver, "x")) == {ISnapshot, IStreamOut, IStreamIn, IAllocatedExtents}


# -- stream-in and stream-out ----------------------------------------------------


def test_round_trip_of_random_zeros_and_text(driver: Qcow2Driver, root: Path) -> None:
    """Bytes written and committed read back identically from a real, compact qcow2 image
    whose size is not a whole number of clusters; holes and zero blocks are not stored."""
    data = mixed()
    assert len(data) % CLUSTER != 0
    volume = VolumeRef("vol-1")
    driver.write_volume(volume, data)
    image = root / "vol-1.qcow2"
    info = image_info(image)
    assert info["format"] == "qcow2" and info["virtual-size"] == len(data)
    assert driver.allocated_bytes(volume) == len(data) - 4 * CLUSTER  # zero blocks: no data
    assert driver.read_range(volume, 0, len(data) + 4096) == data
    assert driver.list_volumes() == [volume]
    assert stray_files(root) == []


def test_reader_contract(driver: Qcow2Driver) -> None:
    """readinto_at fills a slice of a reused buffer, reads short only at the end, reports
    the virtual size, is idempotent to close, and leaves no qemu-nbd process behind."""
    data = os.urandom(3 * MiB + 512)
    driver.write_volume(VolumeRef("v"), data)
    buffer = bytearray(4 * MiB)
    reader = driver.open_read(VolumeRef("v"))
    try:
        assert reader.size == len(data)
        assert reader.readinto_at(MiB, memoryview(buffer)[MiB : 2 * MiB]) == MiB
        assert buffer[MiB : 2 * MiB] == data[MiB : 2 * MiB]
        assert reader.readinto_at(2 * MiB, memoryview(buffer)) == MiB + 512
        assert buffer[: MiB + 512] == data[2 * MiB :]
        assert reader.readinto_at(len(data), memoryview(buffer)) == 0
        assert reader.readinto_at(len(data) + 99, memoryview(buffer)) == 0
        assert qemu_nbd_children()
    finally:
        reader.close()
    reader.close()
    assert qemu_nbd_children() == []


def test_large_reads_are_split_and_reassembled(driver: Qcow2Driver) -> None:
    """One 24 MiB read (many NBD requests in flight, answered in any order) is exact."""
    data = b"".join(i.to_bytes(4, "big") * (MiB // 4) for i in range(24))
    driver.write_volume(VolumeRef("v"), data)
    assert driver.read_range(VolumeRef("v"), 0, len(data)) == data
    assert driver.read_range(VolumeRef("v"), 5 * MiB + 3, 7) == data[5 * MiB + 3 : 5 * MiB + 10]


def test_sizes_must_be_whole_sectors(driver: Qcow2Driver, root: Path) -> None:
    """qcow2 cannot hold a size that is not a multiple of 512: refused before any write."""
    with pytest.raises(BackendError, match="512-byte sectors"):
        driver.open_write(VolumeRef("v"), 1000)
    with pytest.raises(BackendError, match="512-byte sectors"):
        driver.create_volume("v", 1000)
    with pytest.raises(ValueError, match="negative"):
        driver.open_write(VolumeRef("v"), -512)
    assert driver.list_volumes() == [] and stray_files(root) == []


def test_commit_replaces_with_exact_size_and_zeros(driver: Qcow2Driver, root: Path) -> None:
    """After commit the volume is `size` bytes: what was written, zeros elsewhere."""
    checks.commit_replaces_with_exact_size(driver, root, old_size=4096, size=1024, tail=1020)


def test_previous_volume_intact_until_commit(driver: Qcow2Driver) -> None:
    """While a writer is open the old content is what readers see; a reader opened
    before the commit keeps reading the old image."""
    checks.old_volume_readable_until_commit(driver, b"old!" * 128, b"new!" * 128)


def test_a_new_volume_another_writer_made_is_not_replaced(driver: Qcow2Driver, root: Path) -> None:
    checks.a_new_volume_made_meanwhile_is_not_replaced(driver, root, b"1" * 512, b"2" * 512)


def test_a_replaced_volume_keeps_its_mode(driver: Qcow2Driver, root: Path) -> None:
    checks.a_replaced_volume_keeps_its_mode(driver, root / "shared.qcow2", b"1" * 512, b"2" * 512)


def test_abort_keeps_the_old_volume_and_no_temp_files(driver: Qcow2Driver, root: Path) -> None:
    """abort discards everything written, is idempotent, and leaves no temporary file."""
    checks.abort_keeps_old_volume(driver, root, b"keep me!" * 64, read=16)
    driver.open_write(VolumeRef("new"), 512).abort()
    assert driver.list_volumes() == [VolumeRef("v")]
    with pytest.raises(VolumeNotFound):
        driver.open_read(VolumeRef("new"))


def test_write_beyond_size_is_refused(driver: Qcow2Driver) -> None:
    """A writer never makes the volume longer than the size it was opened with."""
    checks.write_beyond_size_is_refused(driver, 512)


# -- allocated-extents -------------------------------------------------------------


def test_sparse_volume_reports_only_its_data(driver: Qcow2Driver, root: Path) -> None:
    """A 1 GiB virtual disk holding 4 MiB reports about 4 MiB, for the volume and for a
    snapshot of it; the image file is about that small too, and the holes read as zeros."""
    volume = VolumeRef("big")
    writer = driver.open_write(volume, 1 * GiB)
    writer.write_at(0, b"\1" * MiB)
    writer.write_at(300 * MiB, b"\2" * (2 * MiB))
    writer.write_at(GiB - MiB, b"\3" * MiB)
    writer.commit()
    expected = [Extent(0, MiB), Extent(300 * MiB, 2 * MiB), Extent(GiB - MiB, MiB)]
    assert list(driver.allocated_extents(volume)) == expected
    assert driver.allocated_bytes(volume) == 4 * MiB
    assert (root / "big.qcow2").stat().st_blocks * 512 < 5 * MiB
    assert driver.read_range(volume, 500 * MiB, 8) == bytes(8)

    snapshot = driver.create_snapshot(volume, "s1")
    assert list(driver.allocated_extents(snapshot)) == expected
    qemu_write(root / "big.qcow2", 600 * MiB, MiB, 7)
    assert driver.allocated_bytes(volume) == 5 * MiB
    assert list(driver.allocated_extents(snapshot)) == expected


def test_extents_of_empty_volumes(driver: Qcow2Driver) -> None:
    """A volume with no data has no extents, whatever its size."""
    checks.hole_only_volumes_have_no_extents(driver)


def test_compressed_clusters_read_correctly(driver: Qcow2Driver, root: Path) -> None:
    """An image made with compressed clusters (no host offset to read from) streams
    exactly, because QEMU decodes it; its extents still cover all of the data."""
    data = mixed()
    raw = root.parent / "source.raw"
    raw.write_bytes(data)
    packed = str(root / "packed.qcow2")
    subprocess.run(
        ["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), packed], check=True
    )
    volume = VolumeRef("packed")
    assert driver.read_range(volume, 0, len(data)) == data
    extents = driver.allocated_extents(volume)
    covered = bytearray(len(data))
    for e in extents:
        covered[e.offset : e.end] = data[e.offset : e.end]
    assert bytes(covered) == data


# -- snapshot -----------------------------------------------------------------------


def test_snapshot_is_isolated_from_later_writes(driver: Qcow2Driver, root: Path) -> None:
    """Writes made in place after a snapshot (even while the snapshot is being read) never
    change the snapshot's bytes; the volume shows them."""
    volume = VolumeRef("v")
    data = mixed()
    driver.write_volume(volume, data)
    snapshot = driver.create_snapshot(volume, "s1")
    image = root / "v.qcow2"
    qemu_write(image, 0, 2 * CLUSTER, 0x55)  # overwrite data
    qemu_write(image, CLUSTER + 512, 512, 0x66)  # into a zero block
    assert driver.read_range(snapshot, 0, len(data)) == data
    assert driver.read_range(volume, 0, 2) == b"\x55\x55"

    reader = driver.open_read(snapshot)
    try:
        buffer = bytearray(len(data))
        qemu_write(image, 0, len(data), 0x77)  # while the reader is open
        assert reader.readinto_at(0, memoryview(buffer)) == len(data)
        assert buffer == data
    finally:
        reader.close()
    assert driver.read_range(volume, len(data) - 2, 2) == b"\x77\x77"


def test_temporary_snapshot_is_deleted(driver: Qcow2Driver, root: Path) -> None:
    """The free temporary_snapshot context deletes the snapshot even on error."""
    driver.write_volume(VolumeRef("v"), b"data" * 128)
    with pytest.raises(RuntimeError), driver.temporary_snapshot(VolumeRef("v")) as snapshot:
        assert driver.read_range(snapshot, 0, 4) == b"data"
        raise RuntimeError
    assert snapshot_names(root / "v.qcow2") == []
    with pytest.raises(SnapshotNotFound):
        driver.open_read(snapshot)


def test_delete_snapshot_is_idempotent(driver: Qcow2Driver, root: Path) -> None:
    """Deleting twice, or a snapshot that never existed, or one of a missing volume, is
    not an error; other snapshots stay."""
    driver.write_volume(VolumeRef("v"), b"data" * 128)
    snapshot = driver.create_snapshot(VolumeRef("v"), "s1")
    driver.create_snapshot(VolumeRef("v"), "s2")
    driver.delete_snapshot(snapshot)
    driver.delete_snapshot(snapshot)
    driver.delete_snapshot(SnapshotRef("v", "made-never"))
    driver.delete_snapshot(SnapshotRef("never", "made"))
    assert snapshot_names(root / "v.qcow2") == ["s2"]
    with pytest.raises(SnapshotNotFound, match=r"^no snapshot 's1' of volume 'v'$"):
        driver.open_read(snapshot)  # was "no snapshot SnapshotRef(volume_id='v', ...)"


def test_existing_snapshot_is_never_clobbered(driver: Qcow2Driver, root: Path) -> None:
    """Reusing a snapshot id fails with BackendError and keeps the first snapshot."""
    driver.write_volume(VolumeRef("v"), b"first" + bytes(507))
    snapshot = driver.create_snapshot(VolumeRef("v"), "s1")
    qemu_write(root / "v.qcow2", 0, 512, 0x73)
    with pytest.raises(BackendError, match="exists"):
        driver.create_snapshot(VolumeRef("v"), "s1")
    assert driver.read_range(snapshot, 0, 5) == b"first"
    assert snapshot_names(root / "v.qcow2") == ["s1"]


def test_concurrent_snapshots_of_one_volume_all_succeed(driver: Qcow2Driver, root: Path) -> None:
    """Snapshot changes of one volume are serialised (a lock file per volume), so parallel
    backups taking and dropping temporary snapshots do not trip over QEMU's image lock."""
    driver.write_volume(VolumeRef("v"), bytes(512))

    def churn(worker: int) -> None:
        for n in range(3):
            snapshot = driver.create_snapshot(VolumeRef("v"), f"w{worker}-{n}")
            if n % 2:
                driver.delete_snapshot(snapshot)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(churn, range(4)))
    assert sorted(snapshot_names(root / "v.qcow2")) == [
        f"w{w}-{n}" for w in range(4) for n in (0, 2)
    ]


def test_snapshot_of_unknown_volume_leaves_nothing(driver: Qcow2Driver, root: Path) -> None:
    """VolumeNotFound, and no lock or temporary file is left behind."""
    with pytest.raises(VolumeNotFound):
        driver.create_snapshot(VolumeRef("ghost"), "s1")
    assert list(root.rglob("*")) == []


def test_image_held_by_a_running_qemu_cannot_be_snapshotted(
    driver: Qcow2Driver, root: Path
) -> None:
    """QEMU's image lock refuses a snapshot while another QEMU process has the image open
    for writing; the BackendError carries qemu-img's reason. Reading still works."""
    driver.write_volume(VolumeRef("v"), b"live" * 128)
    holder = subprocess.Popen(
        ["qemu-io", "-f", "qcow2", str(root / "v.qcow2")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        holder.stdin.write("read 0 512\n")
        holder.stdin.flush()
        assert "read 512/512 bytes" in holder.stdout.readline()  # the image is open now
        with pytest.raises(BackendError, match=r"qemu-img snapshot failed.*lock"):
            driver.create_snapshot(VolumeRef("v"), "s1")
        assert driver.read_range(VolumeRef("v"), 0, 4) == b"live"
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert snapshot_names(root / "v.qcow2") == []


# -- names, errors, safety ------------------------------------------------------------


def test_unknown_ids_raise_the_right_not_found(driver: Qcow2Driver) -> None:
    """Each kind of missing thing has its own NotFound subclass."""
    driver.write_volume(VolumeRef("v"), bytes(512))
    checks.unknown_ids_raise_their_not_found(
        driver, (lambda: driver.create_snapshot(VolumeRef("nope"), "s"), VolumeNotFound)
    )


@pytest.mark.parametrize("bad", ["..", "../etc", "a/b", ".locks", "", "x" * 129, "/abs"])
def test_bad_ids_are_invalid_names(driver: Qcow2Driver, bad: str) -> None:
    """Ids that could escape the directory are refused before touching the filesystem."""
    driver.write_volume(VolumeRef("v"), bytes(512))
    checks.bad_ids_are_invalid_names(driver, bad, 512)


def test_symlinked_volume_is_refused(driver: Qcow2Driver, tmp_path: Path, root: Path) -> None:
    """A volume path that is a symlink to an image outside is neither read nor written."""
    outside = tmp_path / "secret.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(outside), "1M"], check=True)
    before = outside.read_bytes()
    (root / "link.qcow2").symlink_to(outside)
    checks.symlinked_volume_is_refused(driver, VolumeRef("link"), 512)
    assert outside.read_bytes() == before


def test_symlinked_lock_directory_is_refused(
    driver: Qcow2Driver, tmp_path: Path, root: Path
) -> None:
    """Lock files are never created through a symlinked directory leading outside."""
    outside = checks.link_outside(root, ".locks", tmp_path / "elsewhere")
    driver.write_volume(VolumeRef("v"), bytes(512))
    with pytest.raises(InvalidName):
        driver.create_snapshot(VolumeRef("v"), "s1")
    assert list(outside.iterdir()) == []


def test_images_with_a_backing_file_are_refused(
    driver: Qcow2Driver, tmp_path: Path, root: Path
) -> None:
    """An image whose backing file lies outside the directory is not read through it."""
    base = tmp_path / "outside-base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    qemu_write(base, 0, 512, 0x53)
    overlay = str(root / "overlay.qcow2")
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), overlay],
        check=True,
    )
    volume = VolumeRef("overlay")
    for call in (
        lambda: driver.open_read(volume),
        lambda: driver.allocated_extents(volume),
        lambda: driver.create_snapshot(volume, "s"),
    ):
        with pytest.raises(BackendError, match="backing file"):
            call()


def test_fifo_at_volume_path_is_not_a_volume(driver: Qcow2Driver, root: Path) -> None:
    """A non-regular file is not a volume, and opening it does not hang."""
    checks.fifo_is_not_a_volume(driver, root / "pipe.qcow2", VolumeRef("pipe"))


def test_volume_helpers(driver: Qcow2Driver, root: Path) -> None:
    """create_volume makes an empty qcow2 and refuses to overwrite; list is sorted and
    ignores other files; delete_volume is idempotent."""
    driver.create_volume("b", MiB)
    driver.create_volume("a", MiB)
    with pytest.raises(BackendError):
        driver.create_volume("a", 2 * MiB)
    assert image_info(root / "a.qcow2")["virtual-size"] == MiB
    (root / "notes.txt").write_text("not a volume")
    assert driver.list_volumes() == [VolumeRef("a"), VolumeRef("b")]
    driver.delete_volume("a")
    driver.delete_volume("a")
    assert driver.list_volumes() == [VolumeRef("b")]
    assert stray_files(root) == []


# -- end to end through the common algorithms -------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "store"
    yield Store("lab", PosixStore(path), StoreSpec("lab", "posix", {"path": str(path)}))


def test_backup_of_an_in_use_qcow2_volume_restores_byte_for_byte(
    driver: Qcow2Driver, root: Path, tmp_path: Path, store: Store
) -> None:
    """An in-use qcow2 volume is backed up by snapshot-stream (the temporary snapshot is
    gone afterwards, holes are skipped) and restores exactly into a file volume and into
    a new qcow2 volume."""
    data = mixed(blocks=24) + bytes(2 * MiB) + mixed(blocks=6)
    driver.write_volume(VolumeRef("vol"), data)
    backend = Backend.of("lab", driver)
    out = backup(backend, store, BackupRequest("vol", in_use=True, chunk_size=CLUSTER))
    assert out.strategy == "snapshot-stream" and out.failed == ()
    assert out.size == len(data)
    assert out.holes > 0 and out.bytes_read < len(data)
    assert snapshot_names(root / "vol.qcow2") == []

    files = tmp_path / "files"
    files.mkdir()
    file_backend = Backend.of("files", FileDriver(files))
    restore_backup(file_backend, store, RestoreRequest(out.backup_id, "copy"))
    assert (files / "copy").read_bytes() == data

    restored = restore_backup(backend, store, RestoreRequest(out.backup_id, "copy"))
    assert restored.strategy == "stream-in"
    with closing(driver.open_read(VolumeRef("copy"))) as reader:
        assert reader.size == len(data)
    assert driver.read_range(VolumeRef("copy"), 0, len(data)) == data
    assert stray_files(root) == []
