"""Named failpoints: crash, fail or stall on purpose at a chosen point in the code.

The approach of etcd's gofail and TiKV's fail-rs. Code marks a point with

    failpoint("backup.lease-taken")

and the point does nothing unless the environment variable
``PIECEWORKS_FAILPOINTS`` names it::

    PIECEWORKS_FAILPOINTS="backup.chunk-stored=kill@3;gc.lock-taken=sleep:500"

The value is ``NAME=ACTION[@N]`` items separated by ``;``. ACTION is one of

``kill``
    SIGKILL the own process (no cleanup, no ``finally``: a crash);
``raise``
    raise `FailpointRaised` (an ordinary failure: reverts run);
``sleep:MS``
    sleep MS milliseconds, then carry on.

``@N`` fires on the N-th hit of that point in this process only (default
the first); other hits pass. Every name must be declared in `FAILPOINTS`
(name → one line): an unknown name in the variable raises
`FailpointSpecError` when the variable is parsed, so a typo cannot make a
crash test pass without crashing anything.

Cost when the variable is unset: one module-level bool test per hit.

This module imports nothing from pieceworks (an import-linter contract
keeps it at the bottom), so every layer, drivers included, may call it.
No library offers this for Python (``fail-rs`` and ``gofail`` are for Rust
and Go), hence our own ~150 lines.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "ENV_VAR",
    "FAILPOINTS",
    "MAX_SLEEP_MS",
    "Action",
    "FailpointRaised",
    "FailpointSpecError",
    "configure",
    "failpoint",
    "parse",
]

#: The environment variable that arms failpoints.
ENV_VAR: Final = "PIECEWORKS_FAILPOINTS"

#: Every failpoint, name → one line saying where it is. `docs/failpoints.md`
#: lists the same names with the invariants a crash there must keep.
FAILPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # backup
        "backup.before-lease": (
            "backup: the store is opened (plain or encrypted), no lease written yet"
        ),
        "backup.lease-taken": "backup: the store lease is written, nothing else yet",
        "backup.snapshot-created": "backup: the temporary snapshot exists, no chunk read yet",
        "backup.chunk-stored": "backup: after each new chunk object is written to the store",
        "backup.transfer-done": "backup: every chunk is stored, the snapshot still exists",
        "backup.snapshot-deleted": "backup: the temporary snapshot is deleted, no manifest yet",
        "backup.before-manifest": "backup: just before the manifest is written",
        "backup.manifest-written": (
            "backup: the manifest is durable, the run has not recorded success"
        ),
        "backup.lease-released": "backup: the lease is removed, the outcome not yet returned",
        "backup.source-reverted": "backup: a failed strategy's snapshot was just deleted",
        # incremental
        "incremental.parent-read": "incremental backup: the parent manifest is read",
        "incremental.chunk-reused": (
            "incremental backup: after each chunk reused from the parent (or deduplicated)"
        ),
        # restore
        "restore.manifest-read": "restore: the manifest is read, nothing written yet",
        "restore.chunk-written": "restore: after each chunk is written to the target",
        "restore.before-commit": "restore: every chunk is written, the target not committed",
        "restore.committed": "restore: the target is committed, the outcome not yet returned",
        # readers (restore, verify, copy, check)
        "read.lease-written": (
            "read lease: written, live collectors not yet waited out, no manifest read"
        ),
        "read.lease-taken": "read lease: held (no live collector), no manifest read yet",
        # delete
        "delete.manifest-removed": "delete: the manifest is gone, its chunks not collected",
        # gc
        "gc.lock-taken": "gc: the collector lock is written, leases not yet looked at",
        "gc.leases-checked": "gc: no live lease found, no chunk deleted yet",
        "gc.chunk-deleted": "gc: after each unreferenced chunk is deleted",
        "gc.before-unlock": "gc: every chunk collected, the lock still held",
        # replicate
        "replicate.snapshot-created": "replicate: the temporary source snapshot exists",
        "replicate.chunk-copied": "replicate: after each chunk is written to the target",
        "replicate.native-filled": (
            "replicate (file driver, natively): the target's temporary copy is filled, not"
            " yet committed"
        ),
        "replicate.before-lease": (
            "replicate via a store: the store is opened (plain or encrypted), no lease written yet"
        ),
        "replicate.staged": "replicate via a store: every chunk is staged in the store",
        "replicate.snapshot-deleted": "replicate: the temporary snapshot is deleted",
        "file.piece-copied": (
            "file driver, snapshot or native replica without reflink: after each piece is"
            " copied, before the next"
        ),
        # copy
        "copy.chunk-copied": "copy: after each chunk object is written to the target store",
        "copy.before-manifest": "copy: every chunk of a backup is in the target, no manifest yet",
        # keys
        "key.before-write": "key init/add/passwd: a key file is sealed, not yet written",
        "key.before-remove": (
            "key remove: the key file is checked not to be the last, not yet deleted;"
            " key passwd: the new key file is written, the old one not yet deleted"
        ),
        # stores
        "store.tmp-written": (
            "posix store: a temporary file is written, not yet renamed into place"
        ),
        # remote target
        "target.incoming-written": (
            "remote target: after each piece written into a volume's .incoming copy"
        ),
        # recover
        "recover.item-removed": "recover: after each leftover is removed",
        # jobs
        "job.manifest-written": (
            "job: a posted backup's manifest is written, the job not yet consumed"
        ),
        "job.consumed": (
            "conductor: a job is consumed (off the board), its logbook not yet marked finished"
        ),
        "status.board-read": (
            "jobs show/list/watch: a job's board state is read, its logbook not yet"
        ),
    }
)


class FailpointSpecError(ValueError):
    """``PIECEWORKS_FAILPOINTS`` (or a `configure` spec) does not parse.

    The message names the item at fault: an unknown failpoint, an unknown
    action, a bad ``@N`` or a bad ``sleep:MS``.
    """


class FailpointRaised(RuntimeError):
    """The ``raise`` action of a failpoint fired (an injected, ordinary failure)."""

    def __init__(self, name: str, hit: int) -> None:
        super().__init__(f"failpoint {name} fired (hit {hit})")
        self.name, self.hit = name, hit


@dataclass(frozen=True, slots=True)
class Action:
    """What an armed failpoint does: `kind` ``kill``/``raise``/``sleep``, on hit `nth`."""

    kind: str
    nth: int = 1
    sleep_ms: int = 0


def parse(spec: str) -> dict[str, Action]:
    """The failpoints `spec` arms, name → `Action`; ``""`` arms none.

    Raise `FailpointSpecError` naming the item at fault.
    """
    armed: dict[str, Action] = {}
    for raw in spec.split(";"):
        item = raw.strip()
        if not item:
            continue
        name, sep, rest = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise FailpointSpecError(f"{ENV_VAR}: {item!r} is not NAME=ACTION[@N]")
        if name not in FAILPOINTS:
            raise FailpointSpecError(
                f"{ENV_VAR}: unknown failpoint {name!r} (see docs/failpoints.md for the"
                " declared names)"
            )
        if name in armed:
            raise FailpointSpecError(f"{ENV_VAR}: failpoint {name!r} is named twice")
        armed[name] = _action(item, rest.strip())
    return armed


def _action(item: str, text: str) -> Action:
    action, at, count = text.partition("@")
    nth = 1
    if at:
        if not _whole(count) or int(count) < 1:
            raise FailpointSpecError(f"{ENV_VAR}: in {item!r}, @N needs a whole number N >= 1")
        nth = int(count)
    kind, colon, arg = action.strip().partition(":")
    if kind in ("kill", "raise") and not colon:
        return Action(kind, nth)
    if kind == "sleep" and colon and _whole(arg) and int(arg) <= MAX_SLEEP_MS:
        return Action("sleep", nth, int(arg))
    raise FailpointSpecError(
        f"{ENV_VAR}: in {item!r}, the action must be kill, raise or sleep:MS (MS a whole"
        f" number of milliseconds, at most {MAX_SLEEP_MS})"
    )


def _whole(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes superscripts and full-width digits)."""
    text = text.strip()
    return text.isascii() and text.isdigit()


#: The longest sleep a failpoint takes: a day (a longer one overflowed `time.sleep` when it
#: fired, an unexpected error in the middle of the run instead of exit 2 before it).
MAX_SLEEP_MS = 86_400_000

_lock = threading.Lock()
_armed: dict[str, Action] | None = None  # None: not parsed yet
_hits: dict[str, int] = {}
#: False when the variable is unset or empty and `configure` armed nothing: the fast path.
_enabled: bool = bool(os.environ.get(ENV_VAR, "").strip())


def configure(spec: str | None = None) -> dict[str, Action]:
    """Arm the failpoints `spec` names (default: the environment variable's); reset counts.

    Call early (the CLI does, so a bad variable is a usage error before any
    work starts); `failpoint` parses the variable on its first armed hit
    otherwise. ``configure("")`` disarms every point. Raise
    `FailpointSpecError` if `spec` does not parse.
    """
    global _armed, _enabled
    text = os.environ.get(ENV_VAR, "") if spec is None else spec
    armed = parse(text)
    with _lock:
        _armed, _enabled = armed, bool(armed)
        _hits.clear()
    return dict(armed)


def failpoint(name: str) -> None:
    """Mark the failpoint `name`: do what ``PIECEWORKS_FAILPOINTS`` says, or nothing.

    `name` must be declared in `FAILPOINTS` (checked when failpoints are
    armed, and by the test suite for every call in the package). May kill
    the process, raise `FailpointRaised` or sleep; see the module docstring.
    """
    if not _enabled:
        return
    _fire(name)


def _fire(name: str) -> None:
    if name not in FAILPOINTS:
        raise FailpointSpecError(f"failpoint {name!r} is not declared in pieceworks.failpoints")
    armed = _armed if _armed is not None else configure()
    action = armed.get(name)
    if action is None:
        return
    with _lock:
        hit = _hits[name] = _hits.get(name, 0) + 1
    if hit != action.nth:
        return
    if action.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # SIGKILL is not handled; never carry on in the meantime
    elif action.kind == "raise":
        raise FailpointRaised(name, hit)
    else:
        time.sleep(action.sleep_ms / 1000.0)
