"""mypy --strict with mypy-zope checks an out-of-tree driver package against pieceworks.

The package lives in a temporary directory outside the repository, with a
three-line mypy configuration (strict, the mypy-zope plugin) and no
MYPYPATH: pieceworks is found as installed (editable, ``editable_mode=compat``
as the Makefile and docs/writing-a-driver.md install it) with its py.typed,
and TaskFlow's types through the ``taskflow-stubs`` stub-only package it
ships (test_stubs_package.py checks the same from a built wheel).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GOOD = """
from collections.abc import Sequence

from pieceworks.common_algorithms import Backend
from pieceworks.protocols import (
    AllocatedExtents, Extent, Snapshot, SnapshotRef, Source, StreamOut, VolumeReader, VolumeRef,
)
from pieceworks.testing import ConformanceTests
from taskflow import task
from taskflow.patterns import linear_flow


class MyDriver(Snapshot, StreamOut, AllocatedExtents):
    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        return SnapshotRef(volume.volume_id, snapshot_id)

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        pass

    def open_read(self, source: Source) -> VolumeReader:
        raise NotImplementedError

    def allocated_extents(self, source: Source) -> Sequence[Extent]:
        return []


def backend() -> Backend:
    return Backend.of("mine", MyDriver())


class TestMyDriver(ConformanceTests):
    pass


class Warm(task.Task):  # a task of the author's own

    def execute(self, volume_id: str) -> str:
        return volume_id


def warm_flow() -> linear_flow.Flow:
    return linear_flow.Flow("warm").add(Warm(provides="warmed"))
"""

BROKEN = """
from pieceworks.protocols import AllocatedExtents, Extent, Source
from collections.abc import Sequence


class Broken(AllocatedExtents):
    def allocated_extents(self, source: int) -> Sequence[Extent]:
        return []
"""


def _mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    package = tmp_path / "mydriver"
    package.mkdir()
    (package / "__init__.py").write_text(code, encoding="utf-8")
    (package / "py.typed").write_text("", encoding="utf-8")
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nstrict = True\nplugins = mypy_zope:plugin\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "mydriver"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_an_out_of_tree_driver_type_checks_without_mypypath(tmp_path: Path) -> None:
    """A correct driver package, its backend and its conformance class pass mypy --strict."""
    done = _mypy(tmp_path, GOOD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout


def test_mypy_zope_catches_a_wrong_signature_out_of_tree(tmp_path: Path) -> None:
    """The same setup reports a driver method that takes the wrong type."""
    done = _mypy(tmp_path, BROKEN)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'Argument 1 of "allocated_extents" is incompatible with supertype' in done.stdout
