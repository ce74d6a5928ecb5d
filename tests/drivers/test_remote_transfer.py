"""The target's push (`pieceworks.drivers.remote.transfer.push_volume`), in process.

Real files and a real POSIX store: no target process is needed to see what a
push writes, what it makes durable and how it stops.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.remote.transfer import Job, push_volume
from pieceworks.protocols import ConfigError, OperationCancelled, VolumeRef
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


def test_a_push_reads_only_allocated_extents_lists_no_hole_and_stores_a_repeat_once(
    tmp_path: Path,
) -> None:
    """Holes (unallocated, or all zeros) are neither listed nor stored; a chunk repeated in
    the volume is stored once; the counts say what was read and written."""
    (tmp_path / "v").mkdir()
    files = FileDriver(tmp_path / "v")
    same = os.urandom(MiB)
    with open(tmp_path / "v" / "vol", "wb") as f:
        f.truncate(8 * MiB)  # a sparse file: chunks 1, 4, 6 and 7 are never written
        for index, data in ((0, same), (2, bytes(MiB)), (3, same), (5, os.urandom(MiB // 2))):
            f.seek(index * MiB)
            f.write(data)
    store = PosixStore(tmp_path / "s", durable=False)
    pushed = push_volume(files, VolumeRef("vol"), store, MiB, "zstd")
    assert pushed.size == 8 * MiB
    assert [c.offset // MiB for c in pushed.chunks] == [0, 3, 5]  # zeros and holes left out
    assert pushed.chunks[0].digest == pushed.chunks[1].digest
    assert pushed.chunks_written == 2
    assert pushed.bytes_written == pushed.chunks[0].stored_length + pushed.chunks[2].stored_length
    assert pushed.bytes_read < 8 * MiB  # the unallocated chunks were not read
    assert sorted(store.list("chunks/")) == sorted({chunk_key(c.digest) for c in pushed.chunks})


def test_a_cancelled_push_stops_says_why_and_references_nothing(tmp_path: Path) -> None:
    """The manager going away (the job's cancel flag) stops a push before the next chunk,
    with the target's own reason; one cancelled before it starts reads nothing."""
    files = _volume(tmp_path, os.urandom(8 * MiB))
    store = PosixStore(tmp_path / "s", durable=False)
    job = Job()
    job.cancelled.set()
    with pytest.raises(OperationCancelled, match="the manager went away"):
        push_volume(files, VolumeRef("vol"), store, MiB, "zstd", job=job)
    assert list(store.list("chunks/")) == []

    class CancelledMidway(Job):
        def progress(self, done: int, total: int) -> None:
            super().progress(done, total)
            if done >= 2 * MiB:
                self.cancelled.set()

    midway = CancelledMidway()
    with pytest.raises(OperationCancelled, match="the manager went away"):
        push_volume(files, VolumeRef("vol"), store, MiB, "zstd", threads=1, depth=1, job=midway)
    assert 2 * MiB <= midway.done < 8 * MiB


@pytest.mark.parametrize("chunk_size", [4 << 10, (64 << 10) - 1, (64 << 20) + 1])
def test_a_push_refuses_the_chunk_sizes_a_backup_refuses(tmp_path: Path, chunk_size: int) -> None:
    """The target checks the one range of pieceworks.protocols.chunks (64 KiB to 64 MiB), as
    BackupRequest and --chunk-size do; it accepted 4 KiB to 64 KiB before, a range no manager
    of this version could ask for."""
    files = _volume(tmp_path, os.urandom(MiB))
    store = PosixStore(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"chunk size .* out of range: use 65536 to 67108864"):
        push_volume(files, VolumeRef("vol"), store, chunk_size, "zstd")
    assert not list(store.list("chunks/"))


def test_the_chunk_size_range_has_one_definition() -> None:
    """BackupRequest, the command line and the target share pieceworks.protocols.chunks'."""
    from pieceworks.common_algorithms.operations import requests  # noqa: PLC0415
    from pieceworks.drivers.remote import protocol  # noqa: PLC0415
    from pieceworks.protocols import chunks  # noqa: PLC0415

    assert (chunks.MIN_CHUNK_SIZE, chunks.MAX_CHUNK_SIZE) == (64 << 10, 64 << 20)
    assert (protocol.MIN_CHUNK, protocol.MAX_CHUNK) == (
        chunks.MIN_CHUNK_SIZE,
        chunks.MAX_CHUNK_SIZE,
    )
    assert (requests._MIN_CHUNK, requests._MAX_CHUNK) == (64 << 10, 64 << 20)


@pytest.mark.parametrize(
    "wire",
    [b"", b"10\r\n0123", b"1", b"10\r\n0123456789abcdef\r\n2"],
    ids=["nothing", "mid-chunk", "mid-size-line", "mid-second-size-line"],
)
def test_a_chunked_body_cut_anywhere_is_the_sender_going_away(wire: bytes) -> None:
    """A sender killed while it sends: wherever the bytes stop, the target says the sender
    went away (a TransientError, logged as such); cut inside a chunk-size line it said
    'malformed chunked body: line too long', which read as a broken client."""
    import io  # noqa: PLC0415

    from pieceworks.drivers.remote.transfer import RequestBody  # noqa: PLC0415
    from pieceworks.protocols import TransientError  # noqa: PLC0415

    body = RequestBody(io.BufferedReader(io.BytesIO(wire)), None)
    with pytest.raises(TransientError, match="the sender went away"):
        while body.readinto(memoryview(bytearray(7))):
            pass


def test_an_overlong_chunk_size_line_is_still_malformed() -> None:
    """Only a line cut by the connection's end is the sender going away; one longer than
    the framing allows is a malformed body."""
    import io  # noqa: PLC0415

    from pieceworks.drivers.remote.transfer import RequestBody  # noqa: PLC0415

    body = RequestBody(io.BufferedReader(io.BytesIO(b"1" * 5000 + b"\r\n")), None)
    with pytest.raises(ValueError, match="line too long"):
        body.readinto(memoryview(bytearray(7)))
