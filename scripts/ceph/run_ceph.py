#!/usr/bin/env python3
"""Start or stop a single-node Ceph cluster (one monitor, one memstore OSD, no mgr).

    scripts/ceph/run_ceph.py start --dir DIR [--pool rbd] [--extra-pool rbd2] [--memstore-mib 1024]
                                 [--owner-pid PID] [--port PORT]
    scripts/ceph/run_ceph.py stop --dir DIR

`start` creates DIR (it must not exist or be empty), writes ``DIR/ceph.conf``
for a cluster of its own on free ports of 127.0.0.1 (authentication
``none``, so anyone on this host can use it: for tests and benchmarks, not
for data), starts ``ceph-mon`` and ``ceph-osd`` in the background, creates
the RBD pool(s), waits until RBD answers, and prints one JSON object::

    {"conf": "DIR/ceph.conf", "pool": "rbd", "pools": ["rbd"], "fsid": "...",
     "dir": "DIR", "mon_port": 41234, "pids": {"mon": 123, "osd": 124},
     "seconds": 3.1}

Every client (``ceph``, ``rbd``, the ``rados``/``rbd`` Python bindings)
reaches it with ``CEPH_CONF=DIR/ceph.conf`` or ``conffile=DIR/ceph.conf``.
`stop` terminates the daemons (SIGTERM, then SIGKILL after a timeout) and
removes DIR. A start that fails stops what it started, removes DIR, prints
the daemons' log tails on stderr and exits 1.

Guard: with authentication ``none`` a client talks to whatever monitor holds
the port, and a ``ceph-mon`` that cannot bind its port does not exit but
retries. So the monitor's answer to ``ceph fsid`` must be this cluster's
fsid before anything else is done; otherwise the start fails.

``--owner-pid PID`` ties the cluster to a process (a test session): a
small watcher process stops the cluster and removes DIR as soon as PID is
gone, however it ended (even SIGKILL), so no daemon outlives its user.

The OSD keeps its data in RAM (``memstore``): ``--memstore-mib`` caps it
(default 1024 MiB); the data is gone when the OSD stops.

Standard library only (run it with any python3). Needs ``ceph-mon``,
``ceph-osd``, ``ceph``, ``rbd`` and ``monmaptool`` (``scripts/install-system-deps.sh``
installs them from Debian's packages). Recipe and figures: the design notes
on running a real Ceph in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

PORTS_PER_CLUSTER = 41  # the monitor's port and 40 for the OSD's messengers
_STATE = "cluster.json"
_STOP_TIMEOUT = 15.0


class StartError(RuntimeError):
    """The cluster could not be started; the message says why."""


def _port_block() -> int:
    """A base port P such that P .. P+40 on 127.0.0.1 were all free a moment ago."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(20000, 60000 - PORTS_PER_CLUSTER)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + PORTS_PER_CLUSTER):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise StartError("found no block of 41 free ports on 127.0.0.1")


def _conf(d: Path, fsid: str, port: int, memstore_bytes: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = {port + 1}
ms bind port max = {port + PORTS_PER_CLUSTER - 1}
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {d}/run
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
crash dir = {d}/crash
keyring = {d}/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
paxos propose interval = 0.1
auth allow insecure global id reclaim = false
osd crush chooseleaf type = 0
rbd default features = 61
[client]
# One socket per daemon is enough: clients (rbd, librbd in pieceworks) sharing
# $name=client.admin each tried to bind the same path and printed
# "AdminSocket::bind_and_listen ... File exists" on stderr. An empty path turns
# the client's admin socket off.
admin socket =
[mon]
mon data = {d}/mon.$id
mon cluster log file = {d}/log/cluster.log
[osd]
osd data = {d}/osd.$id
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
"""


def _run(args: list[str], env: dict[str, str], timeout: float = 60.0) -> str:
    try:
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise StartError(
            f"{args[0]} is not installed: run scripts/install-system-deps.sh"
        ) from None
    except subprocess.TimeoutExpired:
        raise StartError(f"{' '.join(args)} did not answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise StartError(
            f"{' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
        )
    return done.stdout.strip()


def _spawn(args: list[str], env: dict[str, str], log: Path) -> int:
    """Start a daemon in the foreground mode (-f) of its own session; return its pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def _alive(pid: int, d: Path) -> bool:
    """Whether `pid` is still one of this cluster's daemons (not a recycled pid).

    The daemons are started with ``-c DIR/ceph.conf``, so their command line
    names this cluster's directory.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and str(d / "ceph.conf").encode() in cmdline


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _terminate(pid: int, d: Path, timeout: float = _STOP_TIMEOUT) -> None:
    """SIGTERM `pid` (if it is ours), wait, then SIGKILL."""
    if not _alive(pid, d):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid, d):
            return
        time.sleep(0.05)
    if _alive(pid, d):
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            _reap(pid)
            if not _alive(pid, d):
                return
            time.sleep(0.05)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(
    d: Path, pools: list[str], memstore_mib: int, timeout: float, port: int | None = None
) -> dict[str, object]:
    """Start a cluster in `d`; return the JSON-able connection info (see the module doc).

    `port`: the monitor's port (the OSD takes the 40 above it) instead of a
    free block found here.
    """
    started = time.monotonic()
    d = d.absolute()
    if d.exists() and any(d.iterdir()):
        raise StartError(f"{d} exists and is not empty: give a new directory")
    for sub in ("mon.a", "osd.0", "run", "log", "crash"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    port = port or _port_block()
    conf = d / "ceph.conf"
    conf.write_text(_conf(d, fsid, port, memstore_mib << 20))
    env = {**os.environ, "CEPH_CONF": str(conf)}
    state: dict[str, object] = {
        "conf": str(conf),
        "pool": pools[0],
        "pools": pools,
        "fsid": fsid,
        "dir": str(d),
        "mon_port": port,
        "pids": {},
    }
    pids: dict[str, int] = {}
    state["pids"] = pids

    def save() -> None:
        (d / _STATE).write_text(json.dumps(state, indent=2) + "\n")

    save()
    _run(
        [
            "monmaptool",
            "--create",
            "--fsid",
            fsid,
            "--addv",
            "a",
            f"[v2:127.0.0.1:{port}]",
            str(d / "monmap"),
        ],
        env,
    )
    _run(["ceph-mon", "-i", "a", "--mkfs", "--monmap", str(d / "monmap")], env)
    pids["mon"] = _spawn(
        ["ceph-mon", "-c", str(conf), "-i", "a", "-f"], env, d / "log" / "mon.a.stdout"
    )
    save()
    remaining = max(5.0, timeout - (time.monotonic() - started))
    answer = _run(["ceph", "--connect-timeout", str(int(remaining)), "fsid"], env, remaining + 5)
    if answer != fsid:
        raise StartError(
            f"the monitor on 127.0.0.1:{port} belongs to another cluster (fsid {answer!r},"
            f" ours {fsid}); refusing to go on"
        )
    osd_uuid = str(uuid.uuid4())
    osd_id = _run(["ceph", "osd", "new", osd_uuid], env)
    if osd_id != "0":
        raise StartError(f"expected osd id 0 in a new cluster, got {osd_id!r}")
    _run(["ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], env)
    pids["osd"] = _spawn(
        ["ceph-osd", "-c", str(conf), "-i", "0", "-f"], env, d / "log" / "osd.0.stdout"
    )
    save()
    for pool in pools:
        _run(["ceph", "osd", "pool", "create", pool, "8", "8"], env)
        remaining = max(5.0, timeout - (time.monotonic() - started))
        _run(["rbd", "pool", "init", pool], env, remaining)  # returns once the PGs are active
    _run(["rbd", "ls", "--pool", pools[0]], env)
    state["seconds"] = round(time.monotonic() - started, 2)
    save()
    return state


def watch(d: Path, owner: int, interval: float = 1.0) -> None:
    """Stop the cluster in `d` once process `owner` is gone (or `d` was removed)."""
    while (d / _STATE).exists():
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            stop(d)
            return
        except PermissionError:
            pass  # alive, another user's
        time.sleep(interval)


def _start_watcher(d: Path, owner: int) -> int:
    """Run `watch` in a detached process of its own; return its pid."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "watch", "--dir", str(d), "--pid", str(owner)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc.pid


def stop(d: Path) -> None:
    """Stop the cluster in `d` (OSD first, then the monitor) and remove `d`."""
    d = d.absolute()
    try:
        state = json.loads((d / _STATE).read_text())
    except FileNotFoundError:
        if d.exists():
            raise StartError(f"{d} holds no cluster started by this script") from None
        return
    pids = state.get("pids", {})
    for name in ("osd", "mon"):
        if name in pids:
            _terminate(int(pids[name]), d)
    shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start a cluster in DIR and print its JSON info")
    p_start.add_argument("--dir", type=Path, required=True)
    p_start.add_argument("--pool", default="rbd", help="the RBD pool (default rbd)")
    p_start.add_argument(
        "--extra-pool", action="append", default=[], help="another RBD pool (repeatable)"
    )
    p_start.add_argument("--memstore-mib", type=int, default=1024, help="OSD capacity in RAM")
    p_start.add_argument("--timeout", type=float, default=90.0, help="start timeout (s)")
    p_start.add_argument(
        "--port", type=int, help="the monitor's port; the OSD uses the 40 above (default: free)"
    )
    p_start.add_argument("--owner-pid", type=int, help="stop the cluster once this process is gone")
    p_stop = sub.add_parser("stop", help="stop the cluster in DIR and remove DIR")
    p_stop.add_argument("--dir", type=Path, required=True)
    p_watch = sub.add_parser("watch", help="(internal) stop DIR's cluster when PID is gone")
    p_watch.add_argument("--dir", type=Path, required=True)
    p_watch.add_argument("--pid", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "watch":
        watch(args.dir.absolute(), args.pid)
        return 0
    if args.command == "stop":
        try:
            stop(args.dir)
        except StartError as exc:
            print(f"run_ceph.py: {exc}", file=sys.stderr)
            return 1
        return 0
    pools = [args.pool, *args.extra_pool]
    if args.dir.exists() and any(args.dir.iterdir()):
        print(
            f"run_ceph.py: {args.dir} exists and is not empty: give a new directory",
            file=sys.stderr,
        )
        return 1
    try:
        info = start(args.dir, pools, args.memstore_mib, args.timeout, args.port)
    except (StartError, OSError) as exc:
        logs = (
            "\n".join(
                f"--- {p.name}\n{_tail(p)}"
                for p in sorted((args.dir / "log").glob("*"))
                if p.is_file()
            )
            if (args.dir / "log").is_dir()
            else ""
        )
        with contextlib.suppress(StartError):
            stop(args.dir)
        print(f"run_ceph.py: cannot start a cluster in {args.dir}: {exc}\n{logs}", file=sys.stderr)
        return 1
    if args.owner_pid:
        info["watcher_pid"] = _start_watcher(args.dir.absolute(), args.owner_pid)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
