"""A remote target's later backups check the chunks it already stored by size, not by reading them.

The target runs in this process (`make_server`, a thread) so that the store
it opens can be watched: every ``get`` it makes is counted, with the bytes
it returned. The manager's side is the real thing (`RemoteDriver` over HTTP,
`backup()` through the common algorithm).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup, verify
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.drivers import store_opener
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.remote import RemoteDriver, service
from pieceworks.drivers.remote.protocol import known_from_json
from pieceworks.drivers.remote.server import make_server
from pieceworks.drivers.remote.transfer import Job
from pieceworks.protocols import InvalidName, IObjectStore, StoreSpec
from pieceworks.protocols.chunks import chunk_key
from tests.support.data import mixed_data

MiB = 1 << 20
CHUNK = 256 << 10


@dataclass
class Reads:
    """What the target read from its store: one ``(key, bytes)`` per ``get``, in order."""

    gets: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def chunk_bytes(self) -> int:
        with self.lock:
            return sum(n for key, n in self.gets if key.startswith("chunks/"))

    def clear(self) -> None:
        with self.lock:
            self.gets.clear()


@dataclass
class Rig:
    """A target in this process, a POSIX store, and the target's reads of it."""

    backend: Backend
    driver: RemoteDriver
    store: Store
    reads: Reads


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    reads = Reads()
    opened = store_opener.open_store

    def counting_open(spec: StoreSpec, *, create: bool = True) -> IObjectStore:
        store = opened(spec, create=create)
        get = store.get

        def counted(key: str) -> bytes:
            try:
                data = get(key)
            except Exception:
                with reads.lock:
                    reads.gets.append((key, 0))
                raise
            with reads.lock:
                reads.gets.append((key, len(data)))
            return data

        store.get = counted  # type: ignore[method-assign]
        return store

    monkeypatch.setattr(service, "open_store", counting_open)
    (tmp_path / "volumes").mkdir()
    server = make_server(tmp_path / "volumes")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "store"
    store = Store(
        "lab",
        PosixStore(path, durable=False),
        StoreSpec("lab", "posix", {"path": str(path), "durable": "false"}),
    )
    driver = RemoteDriver(server.url)
    try:
        yield Rig(Backend.of("remote", driver), driver, store, reads)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _request(**kw: object) -> BackupRequest:
    return BackupRequest("vol", chunk_size=CHUNK, **kw)  # type: ignore[arg-type]


def test_an_incremental_reads_no_stored_chunk_back_and_heals_a_damaged_one(rig: Rig) -> None:
    """The second backup (incremental) of an unchanged volume reads no chunk object back: the
    manager sends its parent's chunks and the target checks their sizes (docs/format.md).
    Before, the target fetched every chunk object in full to check it: on Swift or S3 that
    downloaded the whole backup again. A chunk deleted or truncated in the store since is
    still written again, never referenced as it is."""
    data = mixed_data(24, CHUNK)
    rig.driver.write_volume_bytes("vol", data)
    first = backup(rig.backend, rig.store, _request())
    chunks = read_manifest(rig.store.objects, first.backup_id).chunks
    assert len({c.digest for c in chunks}) >= 12 and first.bytes_stored > 0

    rig.reads.clear()
    second = backup(rig.backend, rig.store, _request(incremental=True))
    assert rig.reads.chunk_bytes() == 0, f"{len(rig.reads.gets)} chunks read back"
    assert second.bytes_stored == 0
    assert read_manifest(rig.store.objects, second.backup_id).chunks == chunks

    lost, cut = chunk_key(chunks[0].digest), chunk_key(chunks[-1].digest)
    rig.store.objects.delete(lost)
    rig.store.objects.put(cut, rig.store.objects.get(cut)[:-1])
    rig.reads.clear()
    third = backup(rig.backend, rig.store, _request(incremental=True))
    assert rig.reads.chunk_bytes() == 0, f"{len(rig.reads.gets)} chunks read back"
    assert third.bytes_stored == chunks[0].stored_length + chunks[-1].stored_length
    manifest = read_manifest(rig.store.objects, third.backup_id)
    assert manifest.chunks == chunks
    for ref in manifest.chunks:
        assert rig.store.objects.head(chunk_key(ref.digest)).size == ref.stored_length
    assert verify(rig.store, third.backup_id).ok


def test_an_incremental_of_a_changed_volume_reads_back_no_chunk_it_finds_stored(rig: Rig) -> None:
    """Chunks that changed since the parent are new: the target looks for them (a killed
    run may have left one) and finds none, so it reads no object body; they are written."""
    data = bytearray(mixed_data(16, CHUNK))
    rig.driver.write_volume_bytes("vol", bytes(data))
    backup(rig.backend, rig.store, _request())
    for index in (0, 2, 3):  # a random block, a zero block (now data) and a text block
        data[index * CHUNK : index * CHUNK + 8] = b"changed!"
    rig.driver.write_volume_bytes("vol", bytes(data))
    rig.reads.clear()
    out = backup(rig.backend, rig.store, _request(incremental=True))
    assert rig.reads.chunk_bytes() == 0, f"{len(rig.reads.gets)} chunks read back"
    assert 0 < len(rig.reads.gets) <= 3  # the new chunks, looked for and not found
    manifest = read_manifest(rig.store.objects, out.backup_id)
    assert manifest.parent is not None and out.bytes_stored > 0
    assert verify(rig.store, out.backup_id).ok


def test_a_target_that_ignores_known_chunks_still_backs_up_and_the_manager_says_so(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A target older than incremental-offload ignores ``known`` and reads every stored chunk
    back, as before: the backup is still right, and the manager logs why it is slow, once."""
    push = service.TargetService.push

    def old_push(self: service.TargetService, body: Mapping[str, Any], job: Job) -> dict[str, Any]:
        answer = push(self, {k: v for k, v in body.items() if k != "known"}, job)
        answer.pop("chunks_known")
        return answer

    monkeypatch.setattr(service.TargetService, "push", old_push)
    data = mixed_data(8, CHUNK)
    rig.driver.write_volume_bytes("vol", data)
    first = backup(rig.backend, rig.store, _request())
    rig.reads.clear()
    with caplog.at_level(logging.WARNING, logger="pieceworks.drivers.remote.client"):
        backup(rig.backend, rig.store, _request(incremental=True))
        second = backup(rig.backend, rig.store, _request(incremental=True))
    assert rig.reads.chunk_bytes() > 0  # the old way
    assert second.bytes_stored == 0
    assert read_manifest(rig.store.objects, second.backup_id).chunks == (
        read_manifest(rig.store.objects, first.backup_id).chunks
    )
    warnings = [r.getMessage() for r in caplog.records if "incremental-offload" in r.getMessage()]
    assert len(warnings) == 1 and rig.driver.url in warnings[0]


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("not a list", ValueError),
        ([[0, CHUNK, "ab" * 32, "zstd"]], ValueError),
        ([[0, CHUNK, "not-a-digest", "zstd", 100]], InvalidName),
        ([[0, CHUNK, "ab" * 32, "lz4", 100]], ValueError),
        ([[0, 0, "ab" * 32, "zstd", 100]], ValueError),
        ([[0, CHUNK, "ab" * 32, "zstd", 3]], ValueError),
    ],
    ids=["not-a-list", "short-row", "bad-digest", "bad-codec", "empty", "shorter-than-a-header"],
)
def test_malformed_known_chunks_are_refused_before_any_work(row: object, error: type) -> None:
    """A known row goes into the pushed chunk list as it is, so the target checks each."""
    with pytest.raises(error):
        known_from_json(row)
    assert known_from_json(None) == ()
    assert known_from_json([[0, CHUNK, "ab" * 32, "zstd", 100]])[0].stored_length == 100
