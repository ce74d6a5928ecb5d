"""Leases, garbage collection and delete, on a real PosixStore and FileDriver volumes."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from pieceworks.common_algorithms.backend import Store
from pieceworks.common_algorithms.format.chunk_pipeline import backup_chunks, verify_chunks
from pieceworks.common_algorithms.format.manifest import (
    Manifest,
    list_manifests,
    read_manifest,
    write_manifest,
)
from pieceworks.common_algorithms.gc.collection import (
    GCLockTimeout,
    acquire_lease,
    backup_lease,
    collect_garbage,
    delete_backup,
    lease_key,
    lease_renewed,
    release_lease,
)
from pieceworks.common_algorithms.gc.leases import reclaim_lease
from pieceworks.common_algorithms.gc.markers import put_marker
from pieceworks.common_algorithms.gc.recover import recover
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import BackupNotFound, CorruptionError, VolumeRef
from pieceworks.protocols.chunks import chunk_key, encode_chunk
from pieceworks.protocols.owner import Owner

CS = 64 * 1024


@pytest.fixture
def driver(tmp_path: Path) -> FileDriver:
    (tmp_path / "volumes").mkdir()
    return FileDriver(tmp_path / "volumes")


@pytest.fixture
def store(tmp_path: Path) -> PosixStore:
    return PosixStore(tmp_path / "store", durable=False)


def block(seed: int) -> bytes:
    return random.Random(seed).randbytes(CS)


def make_volume(driver: FileDriver, volume_id: str, seeds: list[int]) -> VolumeRef:
    """A volume whose i-th chunk is `block(seeds[i])` (seed 0: zeros)."""
    data = b"".join(block(s) if s else bytes(CS) for s in seeds)
    volume = driver.create_volume(volume_id, len(data))
    (Path(driver.root) / volume_id).write_bytes(data)
    return volume


def back_up(driver: FileDriver, store: PosixStore, volume: VolumeRef, backup_id: str) -> Manifest:
    """A whole backup done the way the protocol asks: under a lease, manifest last."""
    with backup_lease(store, backup_id, wait_timeout=10, poll_interval=0.01):
        with closing(driver.open_read(volume)) as reader:
            result = backup_chunks(reader, store, chunk_size=CS)
            size = reader.size
        manifest = Manifest(
            backup_id,
            volume.volume_id,
            "file",
            size,
            CS,
            "zstd",
            result.chunks,
            time.time(),
            "direct-stream",
        )
        write_manifest(store, manifest)
    return manifest


def digest(seed: int) -> str:
    return hashlib.sha256(block(seed)).hexdigest()


def chunk_digests(store: PosixStore) -> set[str]:
    return {key.rpartition("/")[2] for key in store.list("chunks/")}


def orphan(store: PosixStore, seed: int) -> str:
    """Store a chunk no manifest references (as a failed backup leaves behind)."""
    store.put(chunk_key(digest(seed)), encode_chunk(block(seed)))
    return digest(seed)


def put_gc_lock(store: PosixStore, name: str = "gc.test") -> str:
    """A collector lock as a running collector on another host writes it."""
    key = f"locks/{name}"
    body = {"kind": "gc-lock", "id": "test", "host": "otherhost", "pid": 4242, "started": 0.0}
    store.put(key, json.dumps(body).encode())
    return key


# -- collection -------------------------------------------------------------------------


def test_gc_deletes_only_chunks_no_manifest_references(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """Orphans go; every chunk of every backup stays and both backups still verify."""
    a = back_up(driver, store, make_volume(driver, "va", [1, 2, 3, 0]), "a")
    b = back_up(driver, store, make_volume(driver, "vb", [3, 4, 1]), "b")
    lost = {orphan(store, 7), orphan(store, 8)}
    referenced = a.digests() | b.digests()
    assert chunk_digests(store) == referenced | lost
    sizes = sum(((tmp_path / "store") / chunk_key(d)).stat().st_size for d in lost)
    report = collect_garbage(store)
    assert (report.manifests, report.chunks_referenced, report.chunks_deleted) == (2, 4, 2)
    assert report.bytes_freed == sizes and not report.deferred and report.deferred_by == ()
    assert chunk_digests(store) == referenced
    assert verify_chunks(store, a).ok and verify_chunks(store, b).ok
    assert list(store.list("locks/")) == []
    assert collect_garbage(store).chunks_deleted == 0


def test_a_dry_run_deletes_nothing_but_says_what_it_would(store: PosixStore) -> None:
    """dry_run reports the unreferenced chunks and leaves them in place."""
    lost = orphan(store, 9)
    report = collect_garbage(store, dry_run=True)
    assert report.dry_run and report.chunks_deleted == 1 and report.bytes_freed > 0
    assert chunk_digests(store) == {lost}


def test_gc_defers_while_a_backup_holds_a_live_lease(store: PosixStore) -> None:
    """A live lease makes the collector delete nothing and name the backup; its lock is removed."""
    lost = orphan(store, 10)
    with backup_lease(store, "running-1"), backup_lease(store, "running-2"):
        report = collect_garbage(store)
        assert report.deferred and report.deferred_by == ("running-1", "running-2")
        assert report.chunks_deleted == 0 and chunk_digests(store) == {lost}
        assert list(store.list("locks/")) == []
    assert list(store.list("leases/")) == []
    assert collect_garbage(store).chunks_deleted == 1


def put_remote_lease(store: PosixStore, backup_id: str) -> str:
    """A lease as a backup running on another host writes (and re-writes to renew) it."""
    key = lease_key(backup_id)
    body = {"kind": "lease", "id": backup_id, "host": "otherhost", "pid": 4242, "token": "t1"}
    store.put(key, json.dumps(body).encode())
    return key


def test_a_silent_remote_lease_is_ignored_reported_and_removed(store: PosixStore) -> None:
    """A lease of another host not renewed within the TTL does not block collection."""
    put_remote_lease(store, "crashed")
    lost = orphan(store, 11)
    time.sleep(0.3)
    report = collect_garbage(store, lease_ttl=0.2)
    assert not report.deferred and report.stale_markers == (lease_key("crashed"),)
    assert report.chunks_deleted == 1 and lost not in chunk_digests(store)
    assert list(store.list("leases/")) == []


def test_a_renewed_remote_lease_stays_live_beyond_the_ttl(store: PosixStore) -> None:
    """A remote backup renews its lease, so a collector keeps deferring to it."""
    orphan(store, 12)
    put_remote_lease(store, "split")
    time.sleep(0.3)
    put_remote_lease(store, "split")  # its heartbeat
    report = collect_garbage(store, lease_ttl=0.2)
    assert report.deferred_by == ("split",)
    assert "host otherhost pid 4242, remote, renewed 0 s ago" in report.describe_blockers()
    time.sleep(0.3)
    assert collect_garbage(store, lease_ttl=0.2).chunks_deleted == 1


def test_a_lease_of_this_process_stays_live_whatever_its_age(store: PosixStore) -> None:
    """On its own host a live owner is asked directly: no renewal needed, no TTL applies."""
    orphan(store, 13)
    lease = acquire_lease(store, "long")
    time.sleep(0.3)
    report = collect_garbage(store, lease_ttl=0.2)
    assert report.deferred_by == ("long",) and report.blockers[0].state == "alive"
    release_lease(store, "long", "another-token")  # not ours: kept
    assert store.exists("leases/long")
    release_lease(store, "long", lease.token)
    release_lease(store, "long", lease.token)  # idempotent
    assert collect_garbage(store, lease_ttl=0.2).chunks_deleted == 1


def test_gc_refuses_to_guess_past_a_damaged_manifest(
    tmp_path: Path, driver: FileDriver, store: PosixStore
) -> None:
    """If a manifest cannot be read, nothing is deleted and the damage is reported."""
    back_up(driver, store, make_volume(driver, "va", [1]), "a")
    orphan(store, 13)
    path = (tmp_path / "store") / "manifests/a.json"
    path.write_bytes(path.read_bytes().replace(b'"file"', b'"fila"'))
    with pytest.raises(CorruptionError, match="backup 'a'"):
        collect_garbage(store)
    assert len(chunk_digests(store)) == 2
    assert list(store.list("locks/")) == []


# -- the backup side of the protocol -------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_backup_waits_for_a_live_gc_lock_and_times_out_clearly(store: PosixStore) -> None:
    """A backup does not start while a collector runs; after the timeout it says who blocks it."""
    lock = put_gc_lock(store)
    started = time.monotonic()
    with (
        pytest.raises(
            GCLockTimeout,
            match=r"waited 0\.\d s .* held by locks/gc\.test \(host otherhost pid 4242",
        ),
        backup_lease(store, "b1", wait_timeout=0.3, poll_interval=0.05),
    ):
        pytest.fail("the backup must not start while a collector holds its lock")
    assert 0.3 <= time.monotonic() - started < 5
    assert list(store.list("leases/")) == []  # the lease is removed again
    store.delete(lock)


@pytest.mark.timeout(30)
def test_a_backup_proceeds_once_the_collector_finishes(store: PosixStore) -> None:
    """When the collector's lock goes away the waiting backup takes its lease and runs."""
    lock = put_gc_lock(store)
    threading.Timer(0.2, store.delete, (lock,)).start()
    with backup_lease(store, "b1", wait_timeout=10, poll_interval=0.02) as lease:
        assert lease.waited >= 0.15
        assert list(store.list("leases/")) == ["leases/b1"]
    assert list(store.list("leases/")) == []


def test_a_stale_gc_lock_does_not_block_a_backup(store: PosixStore) -> None:
    """A collector that died long ago (lock older than the TTL) is ignored and reported."""
    lock = put_gc_lock(store)
    time.sleep(0.3)
    with backup_lease(store, "b1", wait_timeout=0, lease_ttl=0.2) as lease:
        assert lease.stale_locks == (lock,) and lease.waited < 1
    report = collect_garbage(store, lease_ttl=0.2)
    assert lock in report.stale_markers and list(store.list("locks/")) == []


@pytest.mark.timeout(60)
def test_concurrent_backups_and_collections_never_lose_a_chunk(
    driver: FileDriver, store: PosixStore
) -> None:
    """Collectors running in a loop while backups run never delete a chunk a backup needs."""
    volumes = [make_volume(driver, f"v{i}", [100 + i, 1, 2, 200 + i, 3]) for i in range(6)]
    stop = threading.Event()
    reports = []

    def collector() -> None:
        while not stop.is_set():
            reports.append(collect_garbage(store))

    thread = threading.Thread(target=collector)
    thread.start()
    try:
        for round_ in range(3):
            for i, volume in enumerate(volumes):
                orphan(store, 1000 + round_ * 10 + i)
                back_up(driver, store, volume, f"b{round_}-{i}")
    finally:
        stop.set()
        thread.join()
    manifests = list_manifests(store)
    assert len(manifests) == 18
    assert all(verify_chunks(store, m).ok for m in manifests)
    final = collect_garbage(store)
    assert reports and sum(r.chunks_deleted for r in reports) + final.chunks_deleted == 18
    assert all(verify_chunks(store, m).ok for m in manifests)


# -- delete ---------------------------------------------------------------------------------


def test_delete_removes_the_manifest_then_chunks_no_other_backup_uses(
    driver: FileDriver, store: PosixStore
) -> None:
    """Deleting a backup frees its own chunks and keeps the ones another backup shares."""
    a = back_up(driver, store, make_volume(driver, "va", [1, 2, 3]), "a")
    b = back_up(driver, store, make_volume(driver, "vb", [3, 4]), "b")
    report = delete_backup(store, "a")
    assert report.backup_id == "a" and report.chunks_deleted == 2 and report.bytes_freed > 0
    with pytest.raises(BackupNotFound, match="no backup 'a'"):
        read_manifest(store, "a")
    assert chunk_digests(store) == b.digests() == {digest(3), digest(4)}
    assert a.digests() & b.digests() == {digest(3)}
    assert verify_chunks(store, b).ok
    with pytest.raises(BackupNotFound, match="no backup 'a'"):
        delete_backup(store, "a")


def test_delete_during_a_backup_defers_the_collection(
    driver: FileDriver, store: PosixStore
) -> None:
    """The manifest goes at once; its chunks wait for a collection without live backups."""
    back_up(driver, store, make_volume(driver, "va", [1, 2]), "a")
    with backup_lease(store, "running"):
        report = delete_backup(store, "a")
        assert report.gc is not None and report.gc.deferred_by == ("running",)
        assert report.chunks_deleted == 0 and len(chunk_digests(store)) == 2
    assert list_manifests(store) == []
    assert collect_garbage(store).chunks_deleted == 2
    back_up(driver, store, make_volume(driver, "vb", [5]), "b")
    assert delete_backup(store, "b", collect=False).gc is None
    assert len(chunk_digests(store)) == 1


def test_a_lease_held_across_steps_is_renewed_while_a_step_runs(tmp_path: Path) -> None:
    """lease_renewed re-writes the lease periodically and stops when the block ends."""
    store = PosixStore(tmp_path / "store")
    token = acquire_lease(store, "bk-long").token
    first = store.head("leases/bk-long").modified
    with lease_renewed(store, "bk-long", token, every=0.05):
        time.sleep(0.3)
    renewed = store.head("leases/bk-long").modified
    assert renewed > first
    time.sleep(0.2)
    assert store.head("leases/bk-long").modified == renewed
    assert json.loads(store.get("leases/bk-long"))["token"] == token
    release_lease(store, "bk-long", token)
    assert not store.exists("leases/bk-long")


# -- a run resumed by another process (a conductor taking over a job) --------------------


def test_reclaiming_a_lease_this_process_holds_writes_nothing(store: PosixStore) -> None:
    """The common case, a step after `acquire_lease` in the same process: no wait, no write."""
    token = acquire_lease(store, "bk-own").token
    before = store.get("leases/bk-own")
    assert reclaim_lease(store, "bk-own", token, wait_timeout=0) is False
    assert store.get("leases/bk-own") == before


@pytest.mark.timeout(30)
def test_a_resumed_step_takes_the_dead_runs_lease_and_waits_for_a_live_collector(
    store: PosixStore,
) -> None:
    """A dead process's lease (a killed conductor's) is taken back, then collectors waited out.

    While its holder was dead a collector may have started and still be
    deleting: the resumed step must wait for it like a new backup, or it
    counts on chunks being deleted under it (`lease_renewed` did not wait).
    """
    dead = Owner(Owner.current().host, 2**22 + 7, 1, None, "deadbeef0000")
    put_marker(store, "leases/bk-r", "lease", "bk-r", dead, time.time())
    lock = put_gc_lock(store)
    with (
        pytest.raises(GCLockTimeout, match=r"backup 'bk-r' waited .* locks/gc\.test"),
        lease_renewed(store, "bk-r", "deadbeef0000", wait_timeout=0.3, poll_interval=0.05),
    ):
        pytest.fail("the resumed step must not run while a collector holds its lock")
    held = Owner.from_dict(json.loads(store.get("leases/bk-r")))
    assert held is not None and held.same_process(Owner.current())  # ours now: revert removes it
    store.delete(lock)
    with lease_renewed(store, "bk-r", "deadbeef0000", wait_timeout=0) as resumed:
        assert resumed is False  # this process holds it now
    store.delete("leases/bk-r")
    with lease_renewed(store, "bk-r", "deadbeef0000", wait_timeout=0) as resumed:
        assert resumed is True  # removed meanwhile (by a collector or recover): written again
    assert store.exists("leases/bk-r")


class _ResumedDuringRecover(PosixStore):
    """Removing the dead lease of bk-a re-writes bk-b's, as a conductor resuming its job would."""

    def delete(self, key: str) -> None:
        super().delete(key)
        if key == "leases/bk-a":
            put_marker(self, "leases/bk-b", "lease", "bk-b", Owner.current("b0b0"), time.time())


def test_recover_keeps_a_stale_lease_that_a_resumed_run_wrote_again(tmp_path: Path) -> None:
    """recover removes what it found stale only if unchanged, as a collector does.

    It deleted every lease it had found stale, even one written again
    since by the run that resumed it: that run then held no lease.
    """
    store = _ResumedDuringRecover(tmp_path / "store", durable=False)
    dead = Owner(Owner.current().host, 2**22 + 7, 1, None, "deadbeef0000")
    for backup_id in ("bk-a", "bk-b"):
        put_marker(store, f"leases/{backup_id}", "lease", backup_id, dead, time.time())
    outcome = recover([Store("s", store)], {})
    actions = {item.name: (item.action, item.reason) for item in outcome.items}
    assert actions["leases/bk-a"][0] == "removed"
    assert actions["leases/bk-b"] == ("kept", "written again since it was found stale")
    held = Owner.from_dict(json.loads(store.get("leases/bk-b")))
    assert held is not None and held.token == "b0b0"
