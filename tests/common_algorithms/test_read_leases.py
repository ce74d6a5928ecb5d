"""Read leases: a backup deleted while it is read keeps its chunks until the reader is done.

Every operation that reads chunks after reading a manifest (restore to a
volume or a file, verify, copy, check) writes ``leases/read.<token>`` before
it reads the first manifest, waits out a live collector, and removes the lease
when it is done; a collector defers while one lives. These tests prove the
order on a store that records every operation, the two interleavings of the
proof in `gc.collection` with real threads, and that a dead reader blocks
nobody.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    restore,
    verify,
)
from pieceworks.common_algorithms.format.chunk_pipeline import restore_chunks
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.common_algorithms.gc.collection import collect_garbage, delete_backup
from pieceworks.common_algorithms.gc.leases import backup_lease
from pieceworks.common_algorithms.gc.markers import (
    LEASE_PREFIX,
    GCLockTimeout,
    marker_body,
    put_marker,
    scan_markers,
)
from pieceworks.common_algorithms.gc.read_leases import (
    ReadLease,
    read_lease,
    release_held_read_leases,
)
from pieceworks.common_algorithms.inspect import check_store
from pieceworks.common_algorithms.inspect.check import Subset
from pieceworks.common_algorithms.operations import restore as restore_module
from pieceworks.common_algorithms.operations.copy import copy_backups
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import (
    BackendError,
    BackupNotFound,
    ChunkRef,
    InvalidName,
    StoreSpec,
    TransientError,
    VolumeRef,
)
from pieceworks.protocols.chunks import chunk_key
from pieceworks.protocols.owner import Owner
from tests.common_algorithms.conftest import CHUNK, mixed_data, put_volume, run_with_store
from tests.support.drivers import OffloadFileDriver

#: A chunk object no backup references (collection removes only chunk-shaped keys).
ORPHAN = "chunks/aa/" + "a" * 64


class RecordingStore(PosixStore):
    """A POSIX store that logs each put, get and delete as ``(verb, key)``, in order."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, durable=False)
        self.log: list[tuple[str, str]] = []
        self._mutex = threading.Lock()

    def _note(self, verb: str, key: str) -> None:
        with self._mutex:
            self.log.append((verb, key))

    def put(self, key: str, data: bytes | memoryview) -> None:
        self._note("put", key)
        super().put(key, data)

    def get(self, key: str) -> bytes:
        self._note("get", key)
        return super().get(key)

    def delete(self, key: str) -> None:
        self._note("delete", key)
        super().delete(key)


def _store(path: Path, name: str = "lab") -> Store:
    return Store(name, RecordingStore(path), StoreSpec(name, "posix", {"path": str(path)}))


def _backed_up(tmp_path: Path, file_backend: Backend, blocks: int = 16) -> tuple[Store, str]:
    """A recording store holding one backup of volume ``vol`` (`blocks` chunks), log cleared."""
    put_volume(file_backend, "vol", mixed_data(blocks))
    store = _store(tmp_path / "rec")
    done = backup(file_backend, store, BackupRequest("vol", chunk_size=CHUNK))
    assert isinstance(store.objects, RecordingStore)
    store.objects.log.clear()
    return store, done.backup_id


def _assert_read_under_a_lease(log: list[tuple[str, str]], operation: str) -> None:
    """The read lease is written before the manifest whose chunks are read is read, and
    removed after the last chunk read. (A manifest read earlier, for its size or name,
    chooses no chunk.)"""
    leases = [i for i, (verb, key) in enumerate(log) if key.startswith("leases/read.")]
    assert leases, f"{operation} took no read lease: {log[:6]}"
    first_put = next(i for i in leases if log[i][0] == "put")
    last_delete = max(i for i in leases if log[i][0] == "delete")
    chunks = [i for i, (verb, key) in enumerate(log) if verb == "get" and key.startswith("chunks/")]
    assert chunks, f"{operation} read no chunk"
    manifests = [
        i
        for i, (verb, key) in enumerate(log)
        if verb == "get" and key.startswith("manifests/") and i < min(chunks)
    ]
    assert first_put < max(manifests) < min(chunks), (operation, log)
    assert max(chunks) < last_delete, (operation, log)


# -- every reader reads under a lease ---------------------------------------------------------


def test_restore_reads_the_manifest_and_chunks_under_a_read_lease(
    tmp_path: Path, file_backend: Backend
) -> None:
    """Restore into a volume: lease, then manifest, then chunks, then the lease is gone."""
    store, backup_id = _backed_up(tmp_path, file_backend)
    restore(file_backend, store, RestoreRequest(backup_id, "restored"))
    assert isinstance(store.objects, RecordingStore)
    _assert_read_under_a_lease(store.objects.log, "restore")
    assert list(store.objects.list("leases/")) == []


def test_verify_reads_under_a_read_lease(tmp_path: Path, file_backend: Backend) -> None:
    """verify takes the lease before reading the manifest it checks."""
    store, backup_id = _backed_up(tmp_path, file_backend)
    assert verify(store, backup_id).ok
    assert isinstance(store.objects, RecordingStore)
    _assert_read_under_a_lease(store.objects.log, "verify")
    assert list(store.objects.list("leases/")) == []


def test_copy_reads_the_source_under_a_read_lease(tmp_path: Path, file_backend: Backend) -> None:
    """copy holds a read lease on the source store for the whole copy."""
    store, backup_id = _backed_up(tmp_path, file_backend)
    target = Store("far", PosixStore(tmp_path / "far"), StoreSpec("far", "posix", {}))
    assert copy_backups(store, target, [backup_id]).backups_copied == (backup_id,)
    assert isinstance(store.objects, RecordingStore)
    _assert_read_under_a_lease(store.objects.log, "copy")
    assert list(store.objects.list("leases/")) == []


def test_check_reads_under_a_read_lease(tmp_path: Path, file_backend: Backend) -> None:
    """check (with a data subset) reads manifests and chunks under one read lease."""
    store, _ = _backed_up(tmp_path, file_backend)
    assert check_store(store.objects, subset=Subset(percent=100.0)).ok
    assert isinstance(store.objects, RecordingStore)
    _assert_read_under_a_lease(store.objects.log, "check")
    assert list(store.objects.list("leases/")) == []


# -- what the lease is, and what a collector says about it -------------------------------------


def test_a_read_lease_names_its_owner_operation_and_backups(tmp_path: Path) -> None:
    """``leases/read.<token>`` of kind ``read``; removed on leaving the block."""
    store = PosixStore(tmp_path / "s", durable=False)
    with read_lease(store, "restore", ["bk-1"]) as lease:
        (key,) = store.list("leases/")
        assert key == f"leases/read.{lease.token}"
        body = json.loads(store.get(key))
        assert body["kind"] == "read" and body["operation"] == "restore"
        assert body["backup_ids"] == ["bk-1"] and body["pid"] == os.getpid()
    assert list(store.list("leases/")) == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_read_lease_is_removed_on_failure_and_on_ctrl_c(
    tmp_path: Path, error: BaseException
) -> None:
    """A reader that fails, or is interrupted, leaves no lease behind."""
    store = PosixStore(tmp_path / "s", durable=False)
    with pytest.raises(type(error)), read_lease(store, "verify", ["bk-1"]):
        assert list(store.list("leases/"))
        raise error
    assert list(store.list("leases/")) == []


def test_a_live_read_lease_defers_collection_and_says_so(tmp_path: Path) -> None:
    """deferred, no backup named as being written, the blocking lease of kind read."""
    store = PosixStore(tmp_path / "s", durable=False)
    store.put(ORPHAN, b"x")
    with read_lease(store, "restore", ["bk-7"]):
        report = collect_garbage(store)
    assert report.deferred and report.deferred_by == () and report.chunks_deleted == 0
    assert store.exists(ORPHAN)
    (blocker,) = report.blockers
    assert blocker.lease_kind == "read" and blocker.state == "alive"
    assert report.describe_blockers().startswith(
        f"restore reading backup bk-7 ({Owner.current('').describe()}, alive, renewed "
    )
    doc = report.to_dict("s")
    assert doc["deferred"] is True and doc["deferring_backup_ids"] == []
    (row,) = doc["blocking_leases"]
    assert row["kind"] == "read" and row["operation"] == "restore"
    assert row["backup_ids"] == ["bk-7"] and row["state"] == "alive"
    assert collect_garbage(store).chunks_deleted == 1  # the lease is gone: collected now


def test_a_write_lease_is_reported_as_write_beside_a_read_lease(tmp_path: Path) -> None:
    """Both kinds block; only the backup being written is in deferring_backup_ids."""
    store = PosixStore(tmp_path / "s", durable=False)
    with backup_lease(store, "bk-w"), read_lease(store, "check"):
        report = collect_garbage(store)
    assert report.deferred_by == ("bk-w",)
    kinds = {m.lease_kind: m for m in report.blockers}
    assert set(kinds) == {"read", "write"}
    assert kinds["write"].to_dict()["backup_ids"] == ["bk-w"]
    assert kinds["read"].describe_holder() == "check reading the store's backups"


def test_a_read_lease_is_renewed_while_held(tmp_path: Path) -> None:
    """The heartbeat re-writes it, so a collector on another host never takes it for dead."""
    store = PosixStore(tmp_path / "s", durable=False)
    with read_lease(store, "copy", ["bk-1"], renew_every=0.05) as lease:
        first = json.loads(store.get(lease.key))["renewed"]
        deadline = time.monotonic() + 10
        while json.loads(store.get(lease.key))["renewed"] == first:
            assert time.monotonic() < deadline, "the read lease was never renewed"
            time.sleep(0.02)
        assert json.loads(store.get(lease.key))["backup_ids"] == ["bk-1"]


def test_invalid_backup_ids_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A read lease names only valid ids; a bad one writes nothing."""
    store = PosixStore(tmp_path / "s", durable=False)
    with pytest.raises(InvalidName, match="invalid backup id"):
        read_lease(store, "restore", ["../x"])
    assert list(store.list("leases/")) == []


# -- ordering: the two cases of the proof in gc.collection --------------------------------------


def _chunks_of(store: PosixStore, backup_id: str) -> list[str]:
    return [chunk_key(d) for d in read_manifest(store, backup_id).digests()]


def test_a_delete_while_the_reader_holds_its_lease_defers_and_the_reader_finishes(
    tmp_path: Path, file_backend: Backend
) -> None:
    """Case 1: the lease exists before the collector looks. The manifest goes, the chunks stay
    until the reader has read them all; the next collection frees them."""
    store, backup_id = _backed_up(tmp_path, file_backend)
    objects = store.objects
    assert isinstance(objects, PosixStore)
    chunks = _chunks_of(objects, backup_id)

    volume = Path(file_backend.driver.root, "vol").read_bytes()  # type: ignore[attr-defined]

    class Sink:
        data = bytearray(len(volume))

        def write_at(self, offset: int, data: bytes | memoryview) -> None:
            self.data[offset : offset + len(data)] = data

        def commit(self) -> None: ...

        def abort(self) -> None: ...

    with read_lease(objects, "restore", [backup_id]):
        manifest = read_manifest(objects, backup_id)
        report = delete_backup(objects, backup_id)
        assert report.gc is not None and report.gc.deferred and report.chunks_deleted == 0
        sink = Sink()
        restore_chunks(objects, manifest, sink)  # would raise ChunkMissing without the lease
    assert bytes(sink.data) == volume
    after = collect_garbage(objects)
    assert not after.deferred and after.chunks_deleted == len(set(chunks))


class _Gate:
    """Holds a collector in a thread right after it looked at leases (before it lists the
    manifests), until `open`."""

    def __init__(self, store: PosixStore) -> None:
        self.reached, self.go = threading.Event(), threading.Event()
        original = store.list

        def list_(prefix: str):  # type: ignore[no-untyped-def]
            if prefix == "manifests/" and threading.current_thread().name == "collector":
                self.reached.set()
                assert self.go.wait(30)
            return original(prefix)

        store.list = list_  # type: ignore[method-assign]


def test_a_reader_arriving_after_the_collector_looked_waits_for_it_to_end(
    tmp_path: Path, file_backend: Backend
) -> None:
    """Case 2: the collector looked at leases before the reader wrote its lease. The reader
    waits while the collector's lock lives, so it reads the manifest only after the
    collection; a delete in between makes it "not found", never "chunk missing"."""
    store, backup_id = _backed_up(tmp_path, file_backend)
    objects = store.objects
    assert isinstance(objects, PosixStore)
    gate = _Gate(objects)
    result: dict[str, object] = {}
    collector = threading.Thread(
        target=lambda: result.setdefault("gc", collect_garbage(objects)), name="collector"
    )
    collector.start()
    assert gate.reached.wait(30), "the collector never got past its look at leases"
    entered = threading.Event()

    def reader() -> None:
        try:
            with read_lease(objects, "restore", [backup_id], poll_interval=0.05):
                entered.set()
                result["manifest"] = read_manifest(objects, backup_id)
        except BaseException as exc:
            result["reader"] = exc

    reading = threading.Thread(target=reader)
    reading.start()
    time.sleep(0.5)
    assert not entered.is_set(), "the reader must wait while the collector runs"
    assert any(k.startswith("leases/read.") for k in objects.list("leases/"))
    objects.delete(f"manifests/{backup_id}.json")  # `delete`: the manifest goes meanwhile
    gate.go.set()
    collector.join(30)
    reading.join(30)
    gc = result["gc"]
    assert getattr(gc, "chunks_deleted", 0) > 0  # this collection ran: it took the chunks
    assert entered.is_set() and isinstance(result.get("reader"), BackupNotFound), result


def test_a_reader_gives_up_on_a_collector_that_never_ends_and_leaves_no_lease(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The wait is announced (a warning: it is no hang), GCLockTimeout names the reader and
    the collector, and the read lease is removed."""
    store = PosixStore(tmp_path / "s", durable=False)
    me = Owner.current()
    put_marker(store, f"locks/gc.{me.token}", "gc-lock", me.token, me, time.time())
    with pytest.raises(GCLockTimeout, match=r"restore of bk-1 waited .* held by locks/gc\."):
        ReadLease(store, "restore", ["bk-1"], wait_timeout=0.2, poll_interval=0.05).acquire()
    assert list(store.list("leases/")) == []
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage().startswith(
        f"restore of bk-1 waits for a garbage collection to finish: locks/gc.{me.token} ("
    )


# -- a dead reader blocks nobody --------------------------------------------------------------


def _child(code: str, store_path: Path) -> subprocess.CompletedProcess[str]:
    """`run_with_store` with ``ReadLease`` imported too."""
    return run_with_store(
        "from pieceworks.common_algorithms.gc.leases import ReadLease\n" + code, store_path
    )


def test_a_killed_readers_lease_blocks_no_collection(tmp_path: Path) -> None:
    """SIGKILLed holding its lease (no cleanup runs): gc sees the owner dead at once,
    collects, and removes the lease."""
    store = PosixStore(tmp_path / "s", durable=False)
    store.put(ORPHAN, b"x")
    killed = _child(
        "import os, signal\n"
        "lease = ReadLease(store, 'restore', ['bk-1']).acquire()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
        tmp_path / "s",
    )
    assert killed.returncode == -9, killed.stderr
    (key,) = store.list("leases/")
    assert key.startswith("leases/read.")
    report = collect_garbage(store)  # default TTL: no waiting
    assert not report.deferred and report.chunks_deleted == 1
    assert report.stale_markers == (key,) and list(store.list("leases/")) == []


def test_a_silent_remote_readers_lease_goes_stale_after_the_ttl(tmp_path: Path) -> None:
    """A reader on another host that stopped renewing blocks for the TTL, not forever."""
    store = PosixStore(tmp_path / "s", durable=False)
    remote = Owner("otherhost", 4242, 1, None, "feedfacecafe")
    body = json.loads(marker_body("read", remote.token, remote, 0.0, backup_ids=["b"]))
    body["stale_after"] = 0.2  # the owner promised to renew within 0.2 s
    store.put(f"leases/read.{remote.token}", json.dumps(body).encode())
    live = collect_garbage(store, lease_ttl=0.2)
    assert live.deferred and live.blockers[0].state == "remote"
    time.sleep(0.3)
    report = collect_garbage(store, lease_ttl=0.2)
    assert not report.deferred and report.stale_markers == (f"leases/read.{remote.token}",)


def test_a_lease_still_held_at_exit_is_removed(tmp_path: Path) -> None:
    """A reader on an engine thread when Ctrl-C ends the main thread: the lease goes at exit."""
    done = _child(
        "lease = ReadLease(store, 'restore', ['bk-1']).acquire()\n"
        "assert list(store.list('leases/'))\n"
        "raise SystemExit(0)\n",
        tmp_path / "s",
    )
    assert done.returncode == 0, done.stderr
    assert list(PosixStore(tmp_path / "s").list("leases/")) == []


def test_release_held_read_leases_removes_only_this_processes_held_ones(tmp_path: Path) -> None:
    """The exit hook releases what this process holds, and leaves other readers' leases."""
    store = PosixStore(tmp_path / "s", durable=False)
    other = Owner("otherhost", 4242, 1, None, "0123456789ab")
    store.put(
        "leases/read.0123456789ab", marker_body("read", other.token, other, 0.0, backup_ids=[])
    )
    mine = ReadLease(store, "verify", ["bk-1"]).acquire()
    release_held_read_leases()
    assert list(store.list("leases/")) == ["leases/read.0123456789ab"]
    mine.release()  # idempotent


# -- a backend that reads the store itself (offload restore, e.g. a remote target) --------------


class _DeletingDuringPull(OffloadFileDriver):
    """Pulls from the store itself, and deletes the backup (with its collection) as it starts,
    as a user's ``delete`` would while the backend reads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.backup_id = ""
        self.reports: list[object] = []

    def pull_from_store(
        self, target: VolumeRef, size: int, store: StoreSpec, chunks: Sequence[ChunkRef]
    ) -> None:
        objects = PosixStore(store.options["path"])
        self.reports.append(delete_backup(objects, self.backup_id).gc)
        super().pull_from_store(target, size, store, chunks)


def test_an_offload_restore_is_covered_while_the_backend_pulls_from_the_store(
    tmp_path: Path, volumes: Path
) -> None:
    """The backend reads chunks itself (pull): the restore's read lease covers that too, so a
    delete meanwhile defers and the pull finds every chunk."""
    driver = _DeletingDuringPull(volumes)
    backend = Backend.of("lab", driver)
    data = mixed_data(16)
    put_volume(backend, "vol", data)
    path = tmp_path / "st"
    store = Store("lab", PosixStore(path), StoreSpec("lab", "posix", {"path": str(path)}))
    driver.backup_id = backup(backend, store, BackupRequest("vol", chunk_size=CHUNK)).backup_id
    outcome = restore(backend, store, RestoreRequest(driver.backup_id, "restored"))
    assert outcome.strategy == "offload"
    (gc,) = driver.reports
    assert getattr(gc, "deferred", False) and getattr(gc, "chunks_deleted", -1) == 0
    assert (volumes / "restored").read_bytes() == data
    assert list(store.objects.list("leases/")) == []


def test_a_restore_that_waited_out_a_collection_in_vain_tries_no_other_strategy(
    tmp_path: Path, volumes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GCLockTimeout while taking the read lease ends the restore at once: the next strategy
    would only wait as long again (the lease is taken inside each strategy's attempt)."""
    backend = Backend.of("lab", OffloadFileDriver(volumes))  # offload, then stream-in
    put_volume(backend, "vol", mixed_data(4))
    path = tmp_path / "st"
    store = Store("lab", PosixStore(path), StoreSpec("lab", "posix", {"path": str(path)}))
    backup_id = backup(backend, store, BackupRequest("vol", chunk_size=CHUNK)).backup_id
    waits: list[str] = []

    def short(objects: PosixStore, operation: str, ids: Sequence[str]) -> ReadLease:
        waits.append(operation)
        return ReadLease(objects, operation, ids, wait_timeout=0.2, poll_interval=0.05)

    monkeypatch.setattr(restore_module, "read_lease", short)
    me = Owner.current()
    put_marker(store.objects, f"locks/gc.{me.token}", "gc-lock", me.token, me, time.time())
    with pytest.raises(GCLockTimeout, match=r"restore of .* waited .* for garbage collection"):
        restore(backend, store, RestoreRequest(backup_id, "restored"))
    assert waits == ["restore"]
    assert not (volumes / "restored").exists()
    assert list(store.objects.list("leases/")) == []


def test_a_collector_of_an_earlier_version_sees_a_read_lease_as_a_live_lease(
    tmp_path: Path,
) -> None:
    """Earlier versions defer on any live marker under ``leases/`` (`scan_markers` of that
    prefix, owner read from the standard fields): a read lease is one, with a live owner."""
    store = PosixStore(tmp_path / "s", durable=False)
    with read_lease(store, "restore", ["bk-1"]) as lease:
        assert lease.key.startswith(LEASE_PREFIX)
        live, stale = scan_markers(store, LEASE_PREFIX, time.time() + 1)
        assert [m.key for m in live] == [lease.key] and stale == []
        body = json.loads(store.get(lease.key))
        assert Owner.from_dict(body) == Owner.current(lease.token)


class _UnwritableStore(PosixStore):
    """A POSIX store whose writes fail with `error` (an errno), as a read-only mount's do."""

    def __init__(self, root: Path, error: int) -> None:
        super().__init__(root)
        self.error = error

    def put(self, key: str, data: bytes | memoryview) -> None:
        try:
            raise OSError(self.error, os.strerror(self.error), key)
        except OSError as exc:
            raise BackendError(f"cannot write {key!r}: {exc.strerror}") from exc


def test_a_read_only_store_is_read_without_a_lease_and_no_other_failure_is(
    tmp_path: Path,
) -> None:
    """EROFS: the reader goes on unleased (nothing to release); EACCES still fails."""
    import errno  # noqa: PLC0415

    with read_lease(_UnwritableStore(tmp_path / "ro", errno.EROFS), "restore", ["bk-1"]) as held:
        assert held.unleased
    with (
        pytest.raises(BackendError, match="Permission denied"),
        read_lease(_UnwritableStore(tmp_path / "acl", errno.EACCES), "check"),
    ):
        pass


class _FailsRemovingReadLeases(PosixStore):
    """A store whose connection fails as a read lease is being removed."""

    def delete(self, key: str) -> None:
        if key.startswith("leases/read."):
            raise TransientError(f"cannot delete {key!r}: connection reset (gave up after 3 tries)")
        super().delete(key)


def test_a_failing_release_never_replaces_the_readers_own_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader's error is what the user must see, not the store failing again on the lease.

    A restore whose chunk read failed ended with "cannot delete
    leases/read.<token>"; now that is a warning and the restore's error stands.
    """
    store = _FailsRemovingReadLeases(tmp_path / "store", durable=False)
    with (
        pytest.raises(ValueError, match="chunk unreadable"),
        read_lease(store, "restore", ["bk-1"]),
    ):
        raise ValueError("chunk unreadable")
    with read_lease(store, "verify", ["bk-1"]):  # a reader that succeeded: still a success
        pass
    warnings = [r.getMessage() for r in caplog.records if "could not remove" in r.getMessage()]
    assert len(warnings) == 2 and "connection reset" in warnings[0], warnings
