"""One live conductor per name: a conductor registers its ``--name`` on the (Redis) jobboard.

Claims go by process (`board.claim_owner`), so two live conductors sharing
a name never run one job at once; but a second one started under a name in
use (a careless command line, a duplicated service unit) is a mistake an
operator wants to hear about, not a silent twin. So a conductor registers
its name: the key ``<namespace>:conductors.<name>`` holds a JSON record
(``owner``, ``host``, ``pid``, ``started``, ``heartbeat``: Unix times) that
expires after the claim expiry and that the conductor renews every third of
it (`NameRegistration`).

At start, a conductor whose name is registered by another process:

* takes it over at once if that process ran on this host and is gone
  (a restart after a crash, or a kill -9: its pid no longer lives, or is
  this very process's, as in a restarted container);
* else watches the record for up to the expiry: renewed (its heartbeat
  moves on) means a live conductor holds the name, and this one refuses to
  start (`ConductorNameInUse`, exit 2, naming the other's host, pid and
  last heartbeat); lapsed means its holder died (on another host, say), and
  this one takes the name.

A conductor that finds its name registered by another process while it
runs (it was stalled longer than the expiry and a namesake started
meanwhile) stops: after its current step its job is handed over, and
`run_conductor` raises `ConductorNameInUse`. A clean stop removes the
record, so a restart after one is immediate. ZooKeeper and etcd boards
register nothing (only the per-process claims apply there).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from pieceworks.execution.board import JobboardUnavailable, LeasedRedisJobBoard
from pieceworks.protocols import ConfigError

__all__ = ["ConductorNameInUse", "NameRegistration"]

log = logging.getLogger(__name__)

#: Seconds between two looks at a registration held by another process, while waiting.
LOOK_EVERY: Final = 0.2

# Renew the record if it is ours or gone (lapsed unowned); else return the holder's record.
_RENEW = """
local v = redis.call('get', KEYS[1])
if v and cjson.decode(v)['owner'] ~= ARGV[1] then return v end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return false
"""

# Replace the record if it is still exactly the one seen (a dead predecessor's).
_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# Remove the record if it is ours.
_RELEASE = """
local v = redis.call('get', KEYS[1])
if v and cjson.decode(v)['owner'] == ARGV[1] then redis.call('del', KEYS[1]) return 1 end
return 0
"""


class ConductorNameInUse(ConfigError):
    """A live conductor (another process) already runs under this ``--name``."""

    hint = "give each conductor its own --name, or stop the conductor running under it"


def _describe(record: dict[str, Any], now: float) -> str:
    """The holder of `record` for messages: its claim owner (name, host, pid, run token)."""
    heartbeat = float(record.get("heartbeat") or 0.0)
    return f"{record.get('owner')!r} (last heartbeat {max(now - heartbeat, 0.0):.1f} s ago)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class NameRegistration:
    """This process's registration of conductor name `name` on `board` (see the module).

    `owner` is this process's claim owner; `expiry` the seconds the record
    outlives its last renewal (the claim expiry). `acquire()` registers or
    raises `ConductorNameInUse`; a daemon thread then renews the record
    every third of `expiry` until `release()`. `on_lost(text)` is called
    (once, from that thread) if another process holds the name at a renewal.
    """

    def __init__(
        self,
        board: LeasedRedisJobBoard,
        name: str,
        owner: str,
        expiry: float,
        on_lost: Callable[[str], None],
    ) -> None:
        self.board = board
        self.name = name
        self.owner = owner
        self.expiry = expiry
        self.on_lost = on_lost
        self.key = board.join(b"conductors", name)
        self.started = time.time()
        self.lost: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> bytes:
        doc = {
            "owner": self.owner,
            "name": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "heartbeat": time.time(),
        }
        return json.dumps(doc, sort_keys=True).encode()

    @property
    def _px(self) -> int:
        return max(int(self.expiry * 1000), 1)

    def acquire(self) -> None:
        """Register the name, taking it over from a dead holder; `ConductorNameInUse` if live.

        Waits at most about `expiry` seconds (a holder on another host that
        neither renews nor lets its record lapse cannot be: Redis expires it).
        `JobboardUnavailable` (naming the board) if Redis cannot be reached.
        """
        import redis  # noqa: PLC0415 (TaskFlow's board client)

        try:
            self._acquire()
        except redis.RedisError as exc:
            where = self.board.reachability.board if self.board.reachability else "the jobboard"
            raise JobboardUnavailable(
                f"cannot reach {where} to register conductor name {self.name!r}: {exc}"
            ) from None
        self._thread = threading.Thread(
            target=self._renew, name="pieceworks-name-registration", daemon=True
        )
        self._thread.start()

    def _acquire(self) -> None:
        client = self.board.redis_client
        first: bytes | None = None
        deadline = time.monotonic() + self.expiry + 2 * LOOK_EVERY
        while True:
            if client.set(self.key, self._record(), nx=True, px=self._px):
                break
            raw = client.get(self.key)
            if raw is None:
                continue  # lapsed between the two calls: try again at once
            record = json.loads(raw)
            now = time.time()
            if self._dead_here(record):
                taken = client.eval(_TAKE_OVER, 1, self.key, raw, self._record(), self._px)
                if taken:
                    log.info(
                        "conductor name %r: took it over from %s, which is no longer running",
                        self.name,
                        _describe(record, now),
                    )
                    break
                continue
            if first is None:
                first = raw
                log.info(
                    "conductor name %r is registered by %s: waiting up to %g s to see"
                    " whether it is alive",
                    self.name,
                    _describe(record, now),
                    self.expiry,
                )
            elif raw != first or time.monotonic() > deadline:
                raise ConductorNameInUse(
                    f"conductor name {self.name!r} is in use by a live conductor"
                    f" {_describe(record, now)}: two conductors must not share a --name"
                )
            time.sleep(LOOK_EVERY)

    @staticmethod
    def _dead_here(record: dict[str, Any]) -> bool:
        """Whether `record`'s holder ran on this host and is gone (or is this pid: a restart)."""
        if record.get("host") != socket.gethostname():
            return False
        try:
            pid = int(record.get("pid"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return pid == os.getpid() or not _pid_alive(pid)

    def _renew(self) -> None:
        client = self.board.redis_client
        while not self._stopping.wait(self.expiry / 3):
            try:
                other = client.eval(_RENEW, 1, self.key, self.owner, self._record(), self._px)
            except Exception as exc:  # the board out of reach: the jobboard's own log says so
                log.debug("could not renew the registration of %r: %s", self.name, exc)
                continue
            if other:
                holder = _describe(json.loads(other), time.time())
                text = (
                    f"conductor name {self.name!r} was taken by {holder}"
                    f" while this conductor ({self.owner!r}) did not renew it (stalled for"
                    f" longer than {self.expiry:g} s?): stopping"
                )
                log.error("%s", text)
                self.lost = text
                self.on_lost(text)
                return

    def release(self) -> None:
        """Stop renewing and remove the record if it is still ours (a restart is then immediate)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if self.lost is None:
            try:
                self.board.redis_client.eval(_RELEASE, 1, self.key, self.owner)
            except Exception as exc:
                log.debug("could not remove the registration of %r: %s", self.name, exc)
