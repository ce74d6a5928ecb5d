"""Who owns a lease, a lock, a temporary snapshot or a staging file, and whether it lives.

Every marker pieceworks leaves in a store or on a backend records an
`Owner`: the host name, the pid, the process's start time (field 22 of
``/proc/PID/stat``, clock ticks after boot), the boot id
(``/proc/sys/kernel/random/boot_id``) and a run token. On the owner's own
host this tells at once whether the owner still runs: a missing pid, a pid
whose start time differs (the pid was reused) or another boot id (the host
rebooted) means the owner is dead. An owner on another host cannot be
asked: it renews its marker by heartbeat, and the marker is stale once it
has not been renewed for a short TTL.

Hosts are told apart by `socket.gethostname()`: hosts (and containers)
sharing a store need distinct names. Standard library only: psutil would
give the start time too, but not the boot id, and ``/proc`` is two reads.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any, Final

__all__ = ["Liveness", "Owner", "new_token", "process_start"]


class Liveness(Enum):
    """What can be known of an owner from here."""

    ALIVE = "alive"  # same host, the very process still runs
    DEAD = "dead"  # same host, no such process (or another one under its pid, or a zombie)
    REMOTE = "remote"  # another host: alive while it renews its marker


def new_token() -> str:
    """A fresh run token: 12 lowercase hex digits, usable in ids and object keys."""
    return secrets.token_hex(6)


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks after boot; None if it does not exist.

    Read from ``/proc/PID/stat`` (field 22). Returns None where ``/proc``
    is missing or unreadable, too.
    """
    found = _process_stat(pid)
    return None if found is None else found[1]


#: ``/proc/PID/stat`` states of a process that has exited: a zombie its parent has
#: not reaped yet (Z), one being reaped (X, x). Such a process holds nothing.
_EXITED: Final = frozenset("ZXx")


def _process_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start)`` of process `pid` from ``/proc/PID/stat`` (fields 3 and 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    fields = stat.rpartition(")")[2].split()
    try:
        return fields[0], int(fields[19])  # fields 3 and 22 overall
    except (IndexError, ValueError):
        return None


#: This process's ``(pid, start)``, read once per pid (a forked child reads its own).
_this: tuple[int, int | None] = (-1, None)


def _this_process() -> tuple[int, int | None]:
    """This process's pid and start time (`process_start`), the start read once per pid.

    A process's own start time never changes, and reading ``/proc/PID/stat``
    costs about 20 us: every temporary file name a store writes (one per
    chunk object, `pieceworks.drivers._files.owned_tag`) asks for it. The
    cache is keyed by the pid, so a child made by ``fork`` reads its own.
    """
    global _this  # noqa: PLW0603 (one process-wide value)
    pid = os.getpid()
    if _this[0] != pid:
        _this = (pid, process_start(pid))
    return _this


@cache
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Owner:
    """One run of one process: `host`, `pid`, `start` (ticks after boot), `boot`, `token`."""

    host: str
    pid: int
    start: int | None
    boot: str | None
    token: str

    @classmethod
    def current(cls, token: str | None = None) -> Owner:
        """This process, running the run `token` (a new token if None)."""
        pid, start = _this_process()
        return cls(socket.gethostname(), pid, start, _boot_id(), token or new_token())

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields a marker stores: host, pid, proc_start, boot_id, token."""
        return {
            "host": self.host,
            "pid": self.pid,
            "proc_start": self.start,
            "boot_id": self.boot,
            "token": self.token,
        }

    @classmethod
    def from_dict(cls, body: Any) -> Owner | None:
        """The owner a marker's JSON names; None if it names none (an old or damaged marker)."""
        if not isinstance(body, dict):
            return None
        host, pid = body.get("host"), body.get("pid")
        start, boot, token = body.get("proc_start"), body.get("boot_id"), body.get("token")
        if not isinstance(host, str) or not isinstance(pid, int) or isinstance(pid, bool):
            return None
        return cls(
            host,
            pid,
            start if isinstance(start, int) and not isinstance(start, bool) else None,
            boot if isinstance(boot, str) else None,
            token if isinstance(token, str) else "",
        )

    def liveness(self) -> Liveness:
        """Whether this owner runs, as far as this host can tell (see the module docstring)."""
        if self.host != socket.gethostname():
            return Liveness.REMOTE
        boot = _boot_id()
        if self.boot is not None and boot is not None and self.boot != boot:
            return Liveness.DEAD
        pid, own_start = _this_process()
        if self.pid == pid and (self.start is None or self.start == own_start):
            return Liveness.ALIVE
        found = _process_stat(self.pid)
        if found is None:
            if os.path.isdir("/proc/self"):
                return Liveness.DEAD
            return _signal_liveness(self.pid)
        state, start = found
        if self.start is not None and start != self.start:
            return Liveness.DEAD  # the pid now belongs to another process
        if state in _EXITED:
            return Liveness.DEAD  # killed, not yet reaped by its parent: it holds nothing
        return Liveness.ALIVE

    def same_process(self, other: Owner) -> bool:
        """Whether `other` is the very process this owner is (host, pid and start time)."""
        return (self.host, self.pid, self.start) == (other.host, other.pid, other.start)

    def describe(self) -> str:
        """``host H pid P`` for messages."""
        return f"host {self.host} pid {self.pid}"


def _signal_liveness(pid: int) -> Liveness:
    """Without /proc: signal 0 tells whether some process has the pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Liveness.DEAD
    except PermissionError:
        return Liveness.ALIVE
    return Liveness.ALIVE
