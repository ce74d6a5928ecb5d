"""Every shipped driver, and the in-tree changed-blocks driver, pass the conformance suite.

Each class runs all of `pieceworks.testing.ConformanceTests` through its
harness (`tests/support/harnesses.py`); the checks of capabilities a driver
lacks report themselves not applicable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pieceworks.testing import ConformanceTests
from tests.fixtures.ceph_cluster import CephCluster
from tests.support.harnesses import (
    FileHarness,
    Qcow2Harness,
    RbdHarness,
    RemoteHarness,
    TrackingHarness,
)
from tests.support.targets import running_target


class TestFileDriver(ConformanceTests):
    """The file driver: snapshot, stream-out, stream-in, allocated-extents."""

    @pytest.fixture
    def pieceworks_harness(self, tmp_path: Path) -> FileHarness:
        return FileHarness(tmp_path / "volumes")


class TestQcow2Driver(ConformanceTests):
    """The qcow2 driver: snapshot, stream-out, stream-in, allocated-extents (512-byte sizes)."""

    @pytest.fixture
    def pieceworks_harness(self, tmp_path: Path) -> Qcow2Harness:
        return Qcow2Harness(tmp_path / "volumes")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One remote target process for the module: its URL and directory."""
    root = tmp_path_factory.mktemp("target")
    with running_target(root) as url:
        yield url, root


class TestRemoteDriver(ConformanceTests):
    """The remote driver: snapshot, push and pull (the suite reads its volumes by push)."""

    @pytest.fixture
    def pieceworks_harness(self, target: tuple[str, Path]) -> RemoteHarness:
        return RemoteHarness(*target)


class TestTrackingFileDriver(ConformanceTests):
    """The test driver with real changed-blocks, so those checks run on a correct one."""

    @pytest.fixture
    def pieceworks_harness(self, tmp_path: Path) -> TrackingHarness:
        return TrackingHarness(tmp_path / "volumes")


class TestRbdDriver(ConformanceTests):
    """The rbd driver on the real Ceph cluster: snapshot, stream-out, stream-in,
    allocated-extents, changed-blocks (replicate-to-peer has no checks in the suite)."""

    @pytest.fixture
    def pieceworks_harness(self, ceph_cluster: CephCluster) -> RbdHarness:
        return RbdHarness(ceph_cluster)
