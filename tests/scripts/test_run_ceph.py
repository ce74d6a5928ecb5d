"""``scripts/ceph/run_ceph.py``: start, stop, the owner watcher, the fsid guard, bad input.

Real daemons on this host (each test that starts a cluster takes a few
seconds); "no daemon left" is checked in ``/proc``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.ceph_cluster import RUN_CEPH, CephCluster


def script(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_CEPH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def daemons_of(directory: Path) -> list[int]:
    """Pids of live ceph daemons started with ``-c <directory>/ceph.conf``."""
    conf = str(directory / "ceph.conf").encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if conf in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def wait_gone(directory: Path, seconds: float = 30) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := daemons_of(directory)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_start_prints_the_cluster_and_stop_leaves_nothing(tmp_path: Path) -> None:
    """start: one JSON object with conf and pool, two daemons; stop: no daemon, no directory."""
    d = tmp_path / "cluster"
    started = script("start", "--dir", str(d), "--memstore-mib", "256")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    assert info["conf"] == str(d / "ceph.conf") and info["pool"] == "rbd"
    assert sorted(daemons_of(d)) == sorted(info["pids"].values())
    stopped = script("stop", "--dir", str(d))
    assert stopped.returncode == 0, stopped.stderr
    assert wait_gone(d, 5) == []
    assert not d.exists()


def test_a_second_client_prints_no_admin_socket_error(tmp_path: Path) -> None:
    """Every client shared the admin socket path of ``client.admin``: an ``rbd`` command run
    while another client was connected printed ``AdminSocket::bind_and_listen ... File
    exists`` on stderr (found by breaker4). Clients have no admin socket now."""
    d = tmp_path / "cluster"
    started = script("start", "--dir", str(d), "--memstore-mib", "256")
    assert started.returncode == 0, started.stderr
    conf = str(d / "ceph.conf")
    holder = subprocess.Popen(  # a connected client (librados, as pieceworks' driver is)
        [sys.executable, "-c", HOLD_A_CONNECTION, conf], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "connected"
        env = {"CEPH_CONF": conf, "PATH": "/usr/bin:/bin"}
        second = subprocess.run(
            ["rbd", "ls", "rbd"], env=env, capture_output=True, text=True, check=False
        )
        assert second.returncode == 0, second
        assert "AdminSocket" not in second.stderr, second.stderr
    finally:
        holder.kill()
        holder.wait(10)
        assert script("stop", "--dir", str(d)).returncode == 0


HOLD_A_CONNECTION = """
import sys, time, rados
cluster = rados.Rados(conffile=sys.argv[1])
cluster.connect()
print("connected", flush=True)
time.sleep(60)
"""


def test_a_cluster_stops_when_its_owner_is_gone(tmp_path: Path) -> None:
    """--owner-pid: killing the owner (SIGKILL) stops the daemons and removes the directory."""
    owner = subprocess.Popen(["sleep", "600"])
    d = tmp_path / "cluster"
    try:
        started = script("start", "--dir", str(d), "--owner-pid", str(owner.pid))
        assert started.returncode == 0, started.stderr
        assert daemons_of(d)
    finally:
        owner.kill()
        owner.wait()
    assert wait_gone(d) == []
    deadline = time.monotonic() + 10
    while d.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not d.exists()


def test_a_port_held_by_another_cluster_is_refused(
    tmp_path: Path, ceph_cluster: CephCluster
) -> None:
    """The fsid guard: a start on the session cluster's monitor port fails, touching nothing."""
    d = tmp_path / "intruder"
    started = script("start", "--dir", str(d), "--port", str(ceph_cluster.mon_port))
    assert started.returncode == 1
    assert "belongs to another cluster" in started.stderr
    assert ceph_cluster.fsid in started.stderr
    assert wait_gone(d, 10) == []
    assert not d.exists()
    osds = subprocess.run(
        ["ceph", "--conf", ceph_cluster.conf, "osd", "ls"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert osds.stdout.split() == ["0"]  # no OSD was added to the session's cluster


def test_bad_directories_are_refused(tmp_path: Path) -> None:
    """A non-empty directory is never used (nor emptied); stop refuses a non-cluster."""
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious").write_text("keep me")
    started = script("start", "--dir", str(busy))
    assert started.returncode == 1 and "not empty" in started.stderr
    assert (busy / "precious").read_text() == "keep me"
    stopped = script("stop", "--dir", str(busy))
    assert stopped.returncode == 1 and "no cluster" in stopped.stderr
    assert (busy / "precious").exists()
    assert script("stop", "--dir", str(tmp_path / "never")).returncode == 0  # nothing to stop
