"""Leases and locks name their owner: dead owners block nobody, live ones are never robbed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pieceworks import failpoints
from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    restore,
    verify,
)
from pieceworks.common_algorithms.format.manifest import list_backup_ids, read_manifest
from pieceworks.common_algorithms.gc.collection import (
    BackupInProgress,
    acquire_lease,
    backup_lease,
    collect_garbage,
    lease_key,
    release_lease,
)
from pieceworks.common_algorithms.gc.markers import marker_body
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols.chunks import chunk_key
from pieceworks.protocols.owner import Liveness, Owner, process_start
from tests.common_algorithms.conftest import (
    CHUNK,
    mixed_data,
    put_volume,
    run_with_store,
    sha,
    volume_sha,
)

# -- owners ------------------------------------------------------------------------------


def test_an_owner_knows_this_process_alive_and_a_finished_one_dead() -> None:
    """Same host: the pid and its start time decide at once, no TTL needed."""
    me = Owner.current()
    assert me.liveness() is Liveness.ALIVE and len(me.token) == 12
    assert me.start == process_start(os.getpid()) is not None
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = Owner(me.host, int(child.stdout), 1, me.boot, "t")
    assert gone.liveness() is Liveness.DEAD


def test_a_reused_pid_or_another_boot_is_not_mistaken_for_the_owner() -> None:
    """A pid now held by a process started at another time, or before a reboot, is dead."""
    me = Owner.current()
    assert me.start is not None
    parent_start = process_start(os.getppid())
    assert parent_start is not None
    reused = Owner(me.host, os.getppid(), parent_start + 12345, me.boot, "t")
    assert reused.liveness() is Liveness.DEAD
    assert Owner(me.host, os.getppid(), parent_start, me.boot, "t").liveness() is Liveness.ALIVE
    assert Owner(me.host, me.pid, me.start, "another-boot", "t").liveness() is Liveness.DEAD
    assert Owner("elsewhere", me.pid, me.start, me.boot, "t").liveness() is Liveness.REMOTE


def test_an_owner_round_trips_through_json_and_rejects_junk() -> None:
    """Markers of older versions or damaged ones have no owner, never a crash."""
    me = Owner.current()
    assert Owner.from_dict(json.loads(json.dumps(me.to_dict()))) == me
    junk: object
    for junk in (None, [], {"host": 1, "pid": 2}, {"host": "h", "pid": True}, {"pid": 3}):
        assert Owner.from_dict(junk) is None


# -- dead owners block nobody ----------------------------------------------------------------


def test_a_lease_of_a_dead_backup_on_this_host_blocks_no_collection(tmp_path: Path) -> None:
    """A backup process that died holding its lease: gc sees it dead at once and removes it."""
    store = PosixStore(tmp_path / "store", durable=False)
    done = run_with_store(
        "from pieceworks.common_algorithms.gc.collection import acquire_lease\n"
        "acquire_lease(store, 'crashed')\n",
        tmp_path / "store",
    )
    assert done.returncode == 0, done.stderr
    report = collect_garbage(store)  # the default TTL: no waiting
    assert not report.deferred
    assert report.stale_markers == (lease_key("crashed"),)
    assert list(store.list("leases/")) == []


@pytest.mark.timeout(60)
def test_a_killed_collector_does_not_make_backups_wait(tmp_path: Path) -> None:
    """gc SIGKILLed holding its lock: the next backup takes its lease at once, not after 600 s."""
    store = PosixStore(tmp_path / "store", durable=False)
    killed = run_with_store(
        "from pieceworks.common_algorithms.gc.collection import collect_garbage\n"
        "collect_garbage(store)\n",
        tmp_path / "store",
        "gc.lock-taken=kill",
    )
    assert killed.returncode == -9
    (lock,) = store.list("locks/")
    started = time.monotonic()
    with backup_lease(store, "next") as lease:  # default wait timeout: 600 s
        assert lease.stale_locks == (lock,)
    assert time.monotonic() - started < 5
    report = collect_garbage(store)
    assert lock in report.stale_markers and list(store.list("locks/")) == []


def test_a_lease_without_an_owner_ages_out_by_the_ttl(tmp_path: Path) -> None:
    """A marker from an older version (no owner) is stale after the TTL, not before."""
    store = PosixStore(tmp_path / "store", durable=False)
    store.put("leases/old", b'{"kind": "lease"}')
    assert collect_garbage(store, lease_ttl=0.2).deferred_by == ("old",)
    time.sleep(0.3)
    assert collect_garbage(store, lease_ttl=0.2).stale_markers == ("leases/old",)


def test_a_deferred_collection_says_whose_lease_and_whether_it_lives(tmp_path: Path) -> None:
    """The report names the owner, its state and age for each blocking backup."""
    store = PosixStore(tmp_path / "store", durable=False)
    with backup_lease(store, "running"):
        report = collect_garbage(store)
    assert report.deferred_by == ("running",)
    (blocker,) = report.blockers
    assert blocker.state == "alive" and blocker.owner == Owner.current("").describe()
    assert report.describe_blockers().startswith(
        f"backup running ({blocker.owner}, alive, renewed "
    )
    assert report.to_dict("s")["blockers"][0]["state"] == "alive"


# -- one run per backup id -------------------------------------------------------------------


def test_a_second_lease_for_the_same_backup_is_refused_and_the_first_kept(
    tmp_path: Path,
) -> None:
    """BackupInProgress names the holder; the first run's lease is not touched."""
    store = PosixStore(tmp_path / "store", durable=False)
    first = acquire_lease(store, "bk-1")
    before = store.get("leases/bk-1")
    with pytest.raises(BackupInProgress, match=r"'bk-1' is already being written .* alive"):
        acquire_lease(store, "bk-1")
    assert store.get("leases/bk-1") == before
    release_lease(store, "bk-1", "someone-else")
    assert store.get("leases/bk-1") == before
    again = acquire_lease(store, "bk-1", token=first.token)  # the same run, resumed
    assert again.token == first.token
    release_lease(store, "bk-1", first.token)
    assert list(store.list("leases/")) == []


def test_a_dead_runs_lease_is_taken_over(tmp_path: Path) -> None:
    """Running a killed backup id again works: the dead owner's lease is replaced."""
    store = PosixStore(tmp_path / "store", durable=False)
    dead = Owner(Owner.current().host, 2**22 + 7, 1, None, "deadbeef0000")
    store.put("leases/bk-2", marker_body("lease", "bk-2", dead, 0.0))
    lease = acquire_lease(store, "bk-2")
    assert lease.took_over is not None and lease.took_over.state == "dead"
    assert json.loads(store.get("leases/bk-2"))["token"] == lease.token


@pytest.mark.timeout(120)
def test_two_runs_with_one_backup_id_the_second_refused_the_first_intact(
    file_backend: Backend, store: Store
) -> None:
    """The race of the issue: the second run must not revert the first's lease or snapshot.

    Run 1 pauses after its chunks are stored (lease and snapshot held,
    chunks not yet referenced by a manifest). Run 2 with the same id is
    refused up front; a gc meanwhile is deferred; run 1 then finishes and
    its backup verifies and restores byte for byte.
    """
    data = mixed_data(48)
    put_volume(file_backend, "vol", data)
    request = BackupRequest("vol", in_use=True, chunk_size=CHUNK, backup_id="bk-race")
    failpoints.configure("backup.transfer-done=sleep:1500")
    try:
        results: dict[str, object] = {}

        def first() -> None:
            try:
                results["first"] = backup(file_backend, store, request)
            except Exception as exc:
                results["first"] = exc

        thread = threading.Thread(target=first)
        thread.start()
        deadline = time.monotonic() + 30
        snapshots = Path(file_backend.driver.root) / ".snapshots" / "vol"  # type: ignore[attr-defined]
        while not (snapshots.is_dir() and any(snapshots.glob("pw-*"))):
            assert time.monotonic() < deadline, "the first run never took its snapshot"
            time.sleep(0.02)
        holder = json.loads(store.objects.get("leases/bk-race"))["token"]
        snapshot_names = sorted(p.name for p in snapshots.glob("pw-*"))
        with pytest.raises(BackupInProgress):
            backup(file_backend, store, request)
        assert json.loads(store.objects.get("leases/bk-race"))["token"] == holder
        assert sorted(p.name for p in snapshots.glob("pw-*")) == snapshot_names
        assert collect_garbage(store.objects).deferred_by == ("bk-race",)
        thread.join(60)
    finally:
        failpoints.configure("")
    outcome = results["first"]
    assert not isinstance(outcome, Exception), outcome
    assert list_backup_ids(store.objects) == ["bk-race"]
    manifest = read_manifest(store.objects, "bk-race")
    assert all(chunk_key(c.digest) in set(store.objects.list("chunks/")) for c in manifest.chunks)
    assert verify(store, "bk-race").ok
    restore(file_backend, store, RestoreRequest("bk-race", "copy"))
    assert volume_sha(file_backend.driver, "copy") == sha(data)  # type: ignore[arg-type]
    assert list(store.objects.list("leases/")) == list(store.objects.list("runs/")) == []
    assert not any(snapshots.iterdir())


def test_a_stale_lease_written_again_during_a_collection_is_kept(tmp_path: Path) -> None:
    """A collector removed, at its end, every lease it had found stale at its start, even
    one its owner had written again meanwhile (a resumed run, a remote owner renewing
    after a pause): that run then wrote chunks with no lease to defer the next collector."""
    from pieceworks.common_algorithms.gc.leases import renew_lease  # noqa: PLC0415

    store = PosixStore(tmp_path / "store", durable=False)
    done = run_with_store(
        "from pieceworks.common_algorithms.gc.collection import acquire_lease\n"
        "print(acquire_lease(store, 'resumed').token)\n",
        tmp_path / "store",
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    orphan = "chunks/aa/" + "a" * 64
    store.put(orphan, b"x")
    failpoints.configure("gc.chunk-deleted=sleep:1500")
    try:
        reports: list[object] = []
        collector = threading.Thread(target=lambda: reports.append(collect_garbage(store)))
        collector.start()
        deadline = time.monotonic() + 30
        while store.exists(orphan):  # the collector sleeps after its first deletion
            assert time.monotonic() < deadline
            time.sleep(0.02)
        renew_lease(store, "resumed", token)  # this process resumes the dead run
        collector.join(60)
    finally:
        failpoints.configure("")
    assert [getattr(r, "stale_markers", None) for r in reports] == [(lease_key("resumed"),)]
    lease = json.loads(store.get(lease_key("resumed")))
    assert lease["token"] == token and lease["pid"] == os.getpid()
