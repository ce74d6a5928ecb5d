"""Conformance-suite harnesses (`IDriverHarness`) for the shipped drivers and the test ones.

Each writes in place the way the backend's users do: into the volume file
(file and tracking drivers, and the remote target's own directory), with
``qemu-io`` into the qcow2 image, or with a librbd client of its own into
an RBD image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from zope.interface import implementer

from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.qcow2 import Qcow2Driver
from pieceworks.drivers.rbd import RbdDriver
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.protocols import VolumeRef
from pieceworks.testing import IDriverHarness
from tests.fixtures.ceph_cluster import CephCluster
from tests.support.tracking import TrackingFileDriver


def _pwrite(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


@implementer(IDriverHarness)
class FileHarness:
    """The file driver on `root`."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def make_driver(self) -> FileDriver:
        return FileDriver(self.root)

    def create_volume(self, volume_id: str, data: bytes) -> None:
        self.make_driver().write_volume(VolumeRef(volume_id), data)

    def write(self, volume_id: str, offset: int, data: bytes) -> None:
        _pwrite(self.root / volume_id, offset, data)

    def delete_volume(self, volume_id: str) -> None:
        self.make_driver().delete_volume(volume_id)
        shutil.rmtree(self.root / ".snapshots" / volume_id, ignore_errors=True)


@implementer(IDriverHarness)
class TrackingHarness(FileHarness):
    """A `TrackingFileDriver` (or a subclass: the liars) on `root`."""

    def __init__(self, root: Path, driver: type[TrackingFileDriver] = TrackingFileDriver) -> None:
        super().__init__(root)
        self.driver_class = driver

    def make_driver(self) -> TrackingFileDriver:
        return self.driver_class(self.root)

    def write(self, volume_id: str, offset: int, data: bytes) -> None:
        self.make_driver().write_in_place(volume_id, offset, data)


@implementer(IDriverHarness)
class Qcow2Harness:
    """The qcow2 driver on `root`; writes go through ``qemu-io``."""

    size_unit = 512

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def make_driver(self) -> Qcow2Driver:
        return Qcow2Driver(self.root)

    def create_volume(self, volume_id: str, data: bytes) -> None:
        self.make_driver().write_volume(VolumeRef(volume_id), data)

    def write(self, volume_id: str, offset: int, data: bytes) -> None:
        with tempfile.NamedTemporaryFile(dir=self.root.parent) as source:
            source.write(data)
            source.flush()
            subprocess.run(
                [
                    "qemu-io",
                    *("-f", "qcow2"),
                    *("-c", f"write -q -s {source.name} {offset} {len(data)}"),
                    self.make_driver().volume_path(volume_id),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )

    def delete_volume(self, volume_id: str) -> None:
        self.make_driver().delete_volume(volume_id)


@implementer(IDriverHarness)
class RemoteHarness:
    """The remote driver on the target at `url`, which owns the directory `root`.

    Volumes are created through the target's admin API; in-place writes and
    deletes go to the target's own volume files (the target has no API for
    them), which is what a user of a volume on that host would do.
    """

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url, root

    def make_driver(self) -> RemoteDriver:
        return RemoteDriver(self.url)

    def create_volume(self, volume_id: str, data: bytes) -> None:
        self.make_driver().write_volume_bytes(volume_id, data)

    def write(self, volume_id: str, offset: int, data: bytes) -> None:
        _pwrite(self.root / volume_id, offset, data)

    def delete_volume(self, volume_id: str) -> None:
        FileDriver(self.root).delete_volume(volume_id)
        shutil.rmtree(self.root / ".snapshots" / volume_id, ignore_errors=True)


@implementer(IDriverHarness)
class RbdHarness:
    """The rbd driver on a pool of the real Ceph cluster; writes by a librbd client."""

    def __init__(self, cluster: CephCluster) -> None:
        self.cluster = cluster
        self._driver: RbdDriver | None = None

    def make_driver(self) -> RbdDriver:
        return RbdDriver(**self.cluster.options())

    def _own(self) -> RbdDriver:
        if self._driver is None:
            self._driver = self.make_driver()
        return self._driver

    def create_volume(self, volume_id: str, data: bytes) -> None:
        self._own().write_volume(VolumeRef(volume_id), data)

    def write(self, volume_id: str, offset: int, data: bytes) -> None:
        self.cluster.write_in_place(volume_id, offset, data)

    def delete_volume(self, volume_id: str) -> None:
        self._own().delete_volume(volume_id)
