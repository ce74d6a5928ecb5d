"""``pieceworks replicate`` between two rbd backends, SIGKILLed in the middle of the copy.

Real Ceph (the session's cluster, two pools), real processes: the command
runs with ``PIECEWORKS_FAILPOINTS=replicate.chunk-copied=kill@N``, which the
rbd driver's native copy marks after each piece written into the target.
A native incremental writes the target image in place: a killed run left a
replica that was neither the old copy nor the new one, and a source snapshot
nothing removed. Now ``pieceworks recover`` rolls the target back to the last
common snapshot (byte for byte the previous copy) and removes the stray
points; the next replication of the pair does the same by itself.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import rados
import rbd

from pieceworks.drivers.rbd import RbdDriver
from pieceworks.protocols import VolumeRef
from tests.cli.conftest import MiB, Result, Run, config_file
from tests.fixtures.ceph_cluster import CephCluster

SIZE = 24 * MiB
#: A killed client's watch on an image lasts until Ceph times it out (30 s) and more.
WATCH_EXPIRY = 75.0


@pytest.fixture
def lab(
    tmp_path: Path, env: dict[str, str], ceph_cluster: CephCluster
) -> Iterator[tuple[dict[str, str], RbdDriver, RbdDriver, str]]:
    config = config_file(
        tmp_path,
        f"""
[backends.ceph]
driver = "rbd"
pool = "{ceph_cluster.pool}"
conf = "{ceph_cluster.conf}"
[backends.ceph2]
driver = "rbd"
pool = "{ceph_cluster.other_pool}"
conf = "{ceph_cluster.conf}"
[stores.s]
driver = "posix"
path = "{tmp_path / "store"}"
""",
    )
    volume = f"kill-{uuid.uuid4().hex[:8]}"
    source = RbdDriver(**ceph_cluster.options())
    target = RbdDriver(**ceph_cluster.options(ceph_cluster.other_pool))
    try:
        yield {**env, "PIECEWORKS_CONFIG": str(config)}, source, target, volume
    finally:
        for driver in (source, target):
            driver.delete_volume(volume)
            driver.close()


def sha(driver: RbdDriver, volume: str) -> str:
    return hashlib.sha256(driver.read_range(VolumeRef(volume), 0, SIZE + 1)).hexdigest()


def replicate(run: Run, env: dict[str, str], volume: str, *extra: str) -> Result:
    return run(
        "replicate",
        "--from-backend",
        "ceph",
        "--volume",
        volume,
        "--to-backend",
        "ceph2",
        "--overwrite",
        "--json",
        *extra,
        env=env,
    )


def watched(ceph_cluster: CephCluster, pool: str, volume: str) -> bool:
    cluster = rados.Rados(conffile=ceph_cluster.conf, name="client.admin")
    cluster.connect(timeout=20)
    try:
        with (
            cluster.open_ioctx(pool) as ioctx,
            rbd.Image(ioctx, volume, read_only=True) as image,
        ):
            return bool(list(image.watchers_list()))
    finally:
        cluster.shutdown()


def wait_unwatched(ceph_cluster: CephCluster, pool: str, volume: str) -> None:
    deadline = time.monotonic() + WATCH_EXPIRY
    while watched(ceph_cluster, pool, volume):
        assert time.monotonic() < deadline, f"{volume} still watched after {WATCH_EXPIRY} s"
        time.sleep(2)


def killed_mid_copy(run: Run, env: dict[str, str], volume: str, *extra: str) -> None:
    """Run an incremental native replication that dies after its third piece in place."""
    armed = {**env, "PIECEWORKS_FAILPOINTS": "replicate.chunk-copied=kill@3"}
    done = replicate(run, armed, volume, *extra)
    assert done.code == -signal.SIGKILL, done


def replication_snapshots(driver: RbdDriver, volume: str) -> list[str]:
    return [n for n in driver.snapshot_names(VolumeRef(volume)) if n.startswith("pw-")]


def test_recover_rolls_back_a_target_killed_mid_incremental(
    run: Run, lab: tuple[dict[str, str], RbdDriver, RbdDriver, str], ceph_cluster: CephCluster
) -> None:
    """Killed in the middle of writing the target in place: recover restores the old copy."""
    env, source, target, volume = lab
    source.write_volume(VolumeRef(volume), os.urandom(SIZE))
    first = replicate(run, env, volume)
    assert first.code == 0 and first.json()["strategy"] == "native", first
    old = sha(source, volume)
    assert sha(target, volume) == old
    # every object rewritten in place by "a VM": the same image, so the copy is incremental
    ceph_cluster.write_in_place(volume, 0, os.urandom(SIZE))
    new = sha(source, volume)

    killed_mid_copy(run, env, volume, "--in-use")
    assert sha(target, volume) not in (old, new)  # torn: part old, part new
    deadline = time.monotonic() + WATCH_EXPIRY
    while True:
        recovered = run("recover", "--json", env=env)
        assert recovered.code == 0, recovered
        items = {i["name"]: i for i in recovered.json()["items"] if volume in i["name"]}
        target_item = items.get(f"{volume}@replication-target")
        assert target_item is not None, recovered
        if target_item["action"] == "removed":
            break
        assert "watch" in target_item["reason"], target_item
        assert time.monotonic() < deadline, recovered
        time.sleep(3)
    assert "rolled back" in target_item["reason"], target_item
    assert sha(target, volume) == old  # the previous copy, byte for byte
    assert len(replication_snapshots(target, volume)) == 1
    assert len(replication_snapshots(source, volume)) == 1  # the common point only
    again = run("recover", "--json", env=env)
    assert [i for i in again.json()["items"] if volume in i["name"]] == [], again

    done = replicate(run, env, volume)
    assert done.code == 0, done
    assert sha(target, volume) == new
    assert replication_snapshots(source, volume) == replication_snapshots(target, volume)
    assert len(replication_snapshots(source, volume)) == 1


def test_the_next_replication_undoes_a_killed_one_by_itself(
    run: Run, lab: tuple[dict[str, str], RbdDriver, RbdDriver, str], ceph_cluster: CephCluster
) -> None:
    """Without recover, the next replication of the pair removes what the killed one left."""
    env, source, target, volume = lab
    source.write_volume(VolumeRef(volume), os.urandom(SIZE))
    assert replicate(run, env, volume).code == 0
    ceph_cluster.write_in_place(volume, 0, os.urandom(SIZE))
    new = sha(source, volume)
    killed_mid_copy(run, env, volume)
    assert len(replication_snapshots(source, volume)) == 2  # the common one and the killed one's

    wait_unwatched(ceph_cluster, ceph_cluster.other_pool, volume)
    done = replicate(run, env, volume)
    assert done.code == 0, done
    assert sha(target, volume) == new
    assert replication_snapshots(source, volume) == replication_snapshots(target, volume)
    assert len(replication_snapshots(source, volume)) == 1
    recovered = run("recover", "--json", env=env)
    assert [i for i in recovered.json()["items"] if volume in i["name"]] == [], recovered


def test_a_backup_killed_after_its_diff_leaves_the_next_one_incremental(
    run: Run, lab: tuple[dict[str, str], RbdDriver, RbdDriver, str], ceph_cluster: CephCluster
) -> None:
    """Killed after reading RBD's diff: the next incremental still reads only what changed.

    The killed backup's diff used to remove its parent's base snapshot, so the
    next backup lost track and read the whole volume (a full read of every
    TiB after one crash).
    """
    env, source, _, volume = lab
    source.write_volume(VolumeRef(volume), os.urandom(SIZE))
    common = ("--backend", "ceph", "--store", "s", "--volume", volume, "--incremental", "--json")
    full = run("backup", *common, "--in-use", env=env)
    assert full.code == 0, full
    ceph_cluster.write_in_place(volume, 4 * MiB, b"first change")
    armed = {**env, "PIECEWORKS_FAILPOINTS": "backup.transfer-done=kill"}
    assert run("backup", *common, "--in-use", env=armed).code == -signal.SIGKILL
    assert run("recover", env=env).code == 0
    ceph_cluster.write_in_place(volume, 16 * MiB, b"second change")

    again = run("backup", *common, "--in-use", env=env)
    assert again.code == 0, again
    doc = again.json()
    assert doc["parent"] == full.json()["backup_id"]
    assert "lost track" not in again.err, again
    # two 4 MiB objects changed, and the guard's sample: not the 24 MiB volume
    assert doc["bytes_read"] - doc["guard"]["bytes_reread"] <= 8 * MiB, doc
    back = f"{volume}-back"
    try:
        restored = run(
            "restore",
            "--backend",
            "ceph",
            "--store",
            "s",
            "--volume",
            back,
            doc["backup_id"],
            env=env,
        )
        assert restored.code == 0, restored
        assert hashlib.sha256(source.read_range(VolumeRef(back), 0, SIZE + 1)).hexdigest() == sha(
            source, volume
        )
    finally:
        source.delete_volume(back)


#: ``python -c`` this to run the command in a process that SIGKILLs itself right after
#: the rbd driver moved a volume aside to replace it (between its two renames).
DIES_BETWEEN_RENAMES = """
import os, signal, sys, rbd
class DiesAfterMovingAside(rbd.RBD):
    def rename(self, ioctx, src, dest):
        super().rename(ioctx, src, dest)
        if dest.startswith(".pw-old."):
            os.kill(os.getpid(), signal.SIGKILL)
rbd.RBD = DiesAfterMovingAside
sys.argv[0] = "pieceworks"
from pieceworks.cli.process import run
run()
"""


def test_a_restore_killed_between_its_renames_gets_the_volume_back(
    tmp_path: Path,
    run: Run,
    lab: tuple[dict[str, str], RbdDriver, RbdDriver, str],
) -> None:
    """Killed with the old volume moved aside and the new one not yet in place: recover
    renames the old one back (it used to be kept hidden, the volume missing, until an
    operator renamed it by hand)."""
    env, source, _, volume = lab
    source.write_volume(VolumeRef(volume), os.urandom(SIZE))
    before = sha(source, volume)
    common = ("--backend", "ceph", "--store", "s")
    made = run("backup", *common, "--volume", volume, "--json", env=env)
    assert made.code == 0, made
    source.write_volume(VolumeRef(volume), os.urandom(SIZE))  # changed since the backup
    changed = sha(source, volume)
    argv = ["restore", *common, "--volume", volume, "--overwrite", made.json()["backup_id"]]
    killed = subprocess.run(
        [sys.executable, "-c", DIES_BETWEEN_RENAMES, *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed
    assert volume not in [v.volume_id for v in source.list_volumes()]  # moved aside

    recovered = run("recover", "--json", env=env)
    assert recovered.code == 0, recovered
    [item] = [i for i in recovered.json()["items"] if f".pw-old.{volume}." in i["name"]]
    assert item["action"] == "removed" and "renamed back" in item["reason"], item
    assert sha(source, volume) == changed  # the volume as it was before the restore
    assert before != changed
    assert not [i for i in run("recover", "--json", env=env).json()["items"] if volume in i["name"]]
