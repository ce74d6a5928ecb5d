"""Every pair of reference drivers replicates byte for byte, by the best strategy."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from pieceworks.common_algorithms import Backend, ReplicateRequest, Store, replicate
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.qcow2 import Qcow2Driver
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.protocols import BackendSpec, StoreSpec
from tests.support.targets import running_target
from tests.support.volumes import digest, put

KINDS = ("file", "qcow2", "remote")
CHUNK = 256 * 1024
#: The strategy each (source, target) pair is expected to use when all works.
EXPECTED = {
    ("file", "file"): "native",
    ("file", "qcow2"): "stream",
    ("file", "remote"): "via-store",
    ("qcow2", "file"): "stream",
    ("qcow2", "qcow2"): "stream",
    ("qcow2", "remote"): "via-store",
    ("remote", "file"): "via-store",
    ("remote", "qcow2"): "via-store",
    ("remote", "remote"): "native",
}


def data() -> bytes:
    """Random, zero and text blocks; a size qcow2 accepts (whole 512-byte sectors)."""
    text = b"2026-11-27 INFO replicated volume block ok\n" * (CHUNK // 16)
    return os.urandom(CHUNK * 3) + bytes(CHUNK * 2) + text[: CHUNK * 2] + os.urandom(4096)


Make = Callable[[str, str], Backend]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """Build a backend of a kind, each with its own directory (remote: its own process)."""
    with ExitStack() as stack:

        def build(kind: str, name: str) -> Backend:
            path = tmp_path / name
            path.mkdir()
            if kind == "file":
                return Backend.of(
                    name, FileDriver(path), BackendSpec(name, "file", {"path": str(path)})
                )
            if kind == "qcow2":
                return Backend.of(
                    name, Qcow2Driver(path), BackendSpec(name, "qcow2", {"path": str(path)})
                )
            url = stack.enter_context(running_target(path))
            return Backend.of(name, RemoteDriver(url), BackendSpec(name, "remote", {"url": url}))

        yield build


@pytest.mark.parametrize("target_kind", KINDS)
@pytest.mark.parametrize("source_kind", KINDS)
def test_every_pair_replicates_byte_for_byte(
    make: Make, tmp_path: Path, source_kind: str, target_kind: str
) -> None:
    """An in-use volume replicates from each driver to each driver; sha256 equal."""
    source, target = make(source_kind, "src"), make(target_kind, "dst")
    store_dir = tmp_path / "store"
    store = Store("s", PosixStore(store_dir), StoreSpec("s", "posix", {"path": str(store_dir)}))
    content = data()
    put(source, "vol", content)
    out = replicate(
        source,
        target,
        ReplicateRequest("vol", target_volume_id="copy", in_use=True, chunk_size=CHUNK),
        store=store,
    )
    assert out.strategy == EXPECTED[source_kind, target_kind], out.plan.format_text()
    assert out.failed == ()
    assert digest(target, "copy") == hashlib.sha256(content).hexdigest()
    if source_kind == target_kind == "remote":  # two wire-length backends
        assert out.bytes_through_manager == 0
