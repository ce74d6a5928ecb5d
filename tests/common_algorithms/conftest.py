"""Real volumes and a real POSIX store for the common-algorithm tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pieceworks import failpoints
from pieceworks.common_algorithms import Backend, Store
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import StoreSpec, VolumeRef
from tests.support.data import mixed_data as shared_mixed_data
from tests.support.drivers import FailingDriver

CHUNK = 64 * 1024


def mixed_data(blocks: int = 24, block: int = CHUNK) -> bytes:
    """`tests.support.data.mixed_data` in this package's chunk size."""
    return shared_mixed_data(blocks, block)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def volume_sha(driver: FileDriver, volume_id: str) -> str:
    with open(os.path.join(driver.root, volume_id), "rb") as f:
        return sha(f.read())


@pytest.fixture
def volumes(tmp_path: Path) -> Path:
    path = tmp_path / "volumes"
    path.mkdir()
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    path = tmp_path / "store"
    return Store("lab", PosixStore(path), StoreSpec("lab", "posix", {"path": str(path)}))


@pytest.fixture
def file_backend(volumes: Path) -> Backend:
    return Backend.of("lab", FileDriver(volumes))


@pytest.fixture
def failing(volumes: Path) -> Callable[..., tuple[Backend, FailingDriver]]:
    def make(*fail: str) -> tuple[Backend, FailingDriver]:
        driver = FailingDriver(volumes, fail)
        return Backend.of("lab", driver), driver

    return make


def put_volume(backend: Backend, volume_id: str, data: bytes) -> None:
    driver = backend.driver
    assert isinstance(driver, FileDriver)
    driver.write_volume(VolumeRef(volume_id), data)


def run_with_store(code: str, store_path: Path, spec: str = "") -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh Python process with ``store`` bound to a PosixStore at
    `store_path`, failpoints `spec` set for it (none if empty)."""
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV_VAR}
    if spec:
        env[failpoints.ENV_VAR] = spec
    prelude = (
        "from pieceworks.drivers.posix_store import PosixStore\n"
        f"store = PosixStore({str(store_path)!r})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
