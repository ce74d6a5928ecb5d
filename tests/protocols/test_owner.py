"""`Owner.current` reads this process's start time once, and a forked child reads its own.

The start time (``/proc/PID/stat``) is cached per pid, because every
temporary file a store writes is tagged with it: the cache must never make a
child created by ``fork`` claim its parent's identity (its leases and
temporary files would then look alive to the parent and dead after it ends).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from pieceworks.drivers._files import owned_tag, written_by_me
from pieceworks.protocols.owner import Liveness, Owner, process_start


def test_current_names_this_process_with_its_start_time() -> None:
    first, second = Owner.current("t"), Owner.current("t")
    assert first == second
    assert first.pid == os.getpid()
    assert first.start == process_start(os.getpid()) is not None
    assert first.liveness() is Liveness.ALIVE


def test_a_forked_child_names_itself_not_its_parent() -> None:
    parent = Owner.current("t")  # fills the cache in the parent first
    parent_tag = owned_tag()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, then leave at once
        try:
            child = Owner.current("t")
            answer = {
                "pid": child.pid,
                "start": child.start,
                "real_start": process_start(os.getpid()),
                "parent_alive": parent.liveness().value,
                "own_tag_mine": written_by_me(f".tmp-{owned_tag()}"),
                "parent_tag_mine": written_by_me(f".tmp-{parent_tag}"),
            }
            os.write(write, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert answer["pid"] == pid != parent.pid
    assert answer["start"] == answer["real_start"] is not None
    assert answer["parent_alive"] == "alive"  # the parent still runs
    assert answer["own_tag_mine"] is True
    assert answer["parent_tag_mine"] is False
    assert written_by_me(f".tmp-{parent_tag}")


def test_a_killed_process_not_yet_reaped_is_dead() -> None:
    """A zombie (killed, its parent not yet waiting for it) counted as alive: a restarted
    remote target's start-up sweep kept a killed target's ``.incoming`` file, and leases
    of such a process looked held until its parent reaped it (found by breaker4)."""
    proc = subprocess.Popen(["sleep", "100"])
    try:
        me = Owner.current("")
        owner = Owner(me.host, proc.pid, process_start(proc.pid), me.boot, "")
        assert owner.liveness() is Liveness.ALIVE
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(proc.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(proc.pid) == "Z"  # exited, not reaped: its pid and start time remain
        assert process_start(proc.pid) == owner.start
        assert owner.liveness() is Liveness.DEAD
    finally:
        proc.kill()
        proc.wait()
    assert owner.liveness() is Liveness.DEAD


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rpartition(")")[2].split()[0]
