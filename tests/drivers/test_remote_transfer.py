"""The target's push (`pieceworks.drivers.remote.transfer.push_volume`), in process.

Real files and a real POSIX store: no target process is needed to see what a
push writes, what it makes durable and how it stops.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.remote.transfer import push_volume
from pieceworks.protocols import VolumeRef
from pieceworks.protocols.chunks import chunk_key, encode_chunk

MiB = 1 << 20


class _DurabilityStore(PosixStore):
    """A POSIX store that records which keys were made durable: put, or named by a sync."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, durable=False)
        self.durable: set[str] = set()

    def put(self, key: str, data: bytes | memoryview) -> None:
        super().put(key, data)
        self.durable.add(key)

    def sync(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        super().sync(keys)
        self.durable.update(keys)


def _volume(tmp_path: Path, data: bytes) -> FileDriver:
    (tmp_path / "v").mkdir()
    files = FileDriver(tmp_path / "v")
    files.write_volume(VolumeRef("vol"), data)
    return files


def test_a_push_makes_every_chunk_it_references_durable_even_one_found_in_the_store(
    tmp_path: Path,
) -> None:
    """A chunk found in a deferred-sync store may be a killed run's, written and never
    synced: the push must not reference it before a sync covers it (docs/format.md: no
    manifest references a chunk that is not durable), as the manager's backup does."""
    data = os.urandom(3 * MiB)
    files = _volume(tmp_path, data)
    store = _DurabilityStore(tmp_path / "s")
    leftover = chunk_key(hashlib.sha256(data[:MiB]).hexdigest())
    store.put_unsynced(leftover, encode_chunk(data[:MiB], "zstd"))  # a killed run's
    pushed = push_volume(files, VolumeRef("vol"), store, MiB, "zstd")
    referenced = {chunk_key(c.digest) for c in pushed.chunks}
    assert leftover in referenced and len(referenced) == 3
    assert pushed.chunks_written == 2  # the leftover is reused, not written again
    assert referenced <= store.durable
