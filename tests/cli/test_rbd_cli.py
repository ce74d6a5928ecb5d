"""The ``pieceworks`` command against rbd backends of the real Ceph cluster, end to end.

The configuration names two rbd backends (two pools of the cluster the
tests start with ``scripts/ceph/run_ceph.py``) and a POSIX store; the
commands run as subprocesses: plan, backup (full, then incremental after a
write by "a VM"), verify, restore, replicate, volumes, config.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from pieceworks.drivers.rbd import RbdDriver
from pieceworks.protocols import VolumeRef
from tests.cli.conftest import MiB, Run, config_file
from tests.fixtures.ceph_cluster import CephCluster


def test_backup_restore_verify_replicate_through_the_cli(
    run: Run, tmp_path: Path, env: dict[str, str], ceph_cluster: CephCluster
) -> None:
    """An in-use rbd volume backs up from a snapshot (no --force), incrementally, restores
    and replicates natively, byte for byte."""
    keyring = tmp_path / "keyring"
    keyring.write_text("[client.admin]\n")  # auth is off on the test cluster; only masked here
    config = config_file(
        tmp_path,
        f"""
[backends.ceph]
driver = "rbd"
pool = "{ceph_cluster.pool}"
conf = "{ceph_cluster.conf}"
keyring = "{keyring}"
[backends.ceph2]
driver = "rbd"
pool = "{ceph_cluster.other_pool}"
conf = "{ceph_cluster.conf}"
[stores.s]
driver = "posix"
path = "{tmp_path / "store"}"
[engine]
persistence = "memory://"
""",
    )
    e = {**env, "PIECEWORKS_CONFIG": str(config)}
    (tmp_path / "store").mkdir()  # plan never creates the store: an empty one exists
    volume = f"cli-{uuid.uuid4().hex[:8]}"
    source = RbdDriver(**ceph_cluster.options())
    target = RbdDriver(**ceph_cluster.options(ceph_cluster.other_pool))
    data = bytearray(os.urandom(6 * MiB) + bytes(6 * MiB) + os.urandom(MiB))
    source.write_volume(VolumeRef(volume), bytes(data))
    try:
        shown = run("config", "--json", env=e)
        assert shown.code == 0, shown
        assert str(keyring) not in shown.out and "ceph.conf" in shown.out

        listed = run("volumes", "--backend", "ceph", "--json", env=e)
        assert listed.code == 0 and volume in listed.out, listed

        common = ("--backend", "ceph", "--store", "s", "--volume", volume, "--in-use")
        plan = run("plan", "backup", *common, "--json", env=e)
        assert plan.code == 0, plan
        assert plan.json()["chosen"] == "snapshot-stream"

        full = run("backup", *common, "--incremental", "--json", env=e)
        assert full.code == 0, full
        assert full.json()["strategy"] == "snapshot-stream"
        # the chunks holding data ([8, 12) MiB is a hole), less what the guard re-read
        full_doc = full.json()
        assert full_doc["bytes_read"] - full_doc["guard"]["bytes_reread"] == 9 * MiB

        ceph_cluster.write_in_place(volume, 9 * MiB, b"a VM wrote this")
        data[9 * MiB : 9 * MiB + 15] = b"a VM wrote this"
        incr = run("backup", *common, "--incremental", "--json", env=e)
        assert incr.code == 0, incr
        assert incr.json()["parent"] == full.json()["backup_id"]
        read = incr.json()["bytes_read"] - incr.json()["guard"]["bytes_reread"]
        assert read <= 4 * MiB  # one RBD object, not the volume

        backup_id = incr.json()["backup_id"]
        verified = run("verify", "--store", "s", backup_id, "--json", env=e)
        assert verified.code == 0, verified
        back = f"{volume}-back"
        restored = run(
            "restore", "--backend", "ceph", "--store", "s", "--volume", back, backup_id, env=e
        )
        assert restored.code == 0, restored
        want = hashlib.sha256(data).hexdigest()
        got = source.read_range(VolumeRef(back), 0, len(data) + 1)
        assert hashlib.sha256(got).hexdigest() == want

        replicated = run(
            "replicate",
            "--from-backend",
            "ceph",
            "--volume",
            volume,
            "--to-backend",
            "ceph2",
            "--in-use",
            "--json",
            env=e,
        )
        assert replicated.code == 0, replicated
        assert replicated.json()["strategy"] == "native"
        assert replicated.json()["bytes_sent"] == 7 * MiB + 15  # the data only, sent by Ceph
        copy = target.read_range(VolumeRef(volume), 0, len(data) + 1)
        assert hashlib.sha256(copy).hexdigest() == want
    finally:
        for driver in (source, target):
            for v in (volume, f"{volume}-back"):
                driver.delete_volume(v)
            driver.close()
