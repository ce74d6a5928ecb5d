"""A pool's record of the native replications under way, so that a killed one is undone.

A native replication (`_replicate`) takes a point-in-time snapshot of the
source, and an incremental one writes the target image in place. A process
killed in between (SIGKILL, a crash: no ``except`` runs) left a target that
is neither the old copy nor the new one, and a source snapshot that no
pairing names and nothing ever removed (found by killing ``pieceworks
replicate`` mid-copy: the replica's sha256 matched neither side).

So before it starts, each side records what it is about to do in the omap
of one RADOS object of its pool, `OBJECT` (one key per source volume and
peer, ``src.<volume>.<tag>``, and one per target image written in place,
``dst.<volume>``; the value is JSON with the owner, see
`pieceworks.drivers._files.owned_tag`, and what to undo). The entry is
removed when the step ends, whether it succeeded or failed and was rolled
back. An entry whose owner died on this host is undone by `undo_source` /
`undo_target`: by the next replication of the same pair, and by
``pieceworks recover`` (`RbdDriver.sweep_temporary`). An entry of a live
owner is kept; so is one of another host (its owner cannot be judged from
here: recover on that host undoes it, and the next replication of the pair
takes it over).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pieceworks.drivers import _files
from pieceworks.drivers.rbd import _tracking as tracking
from pieceworks.drivers.rbd._cluster import bindings, errors
from pieceworks.drivers.rbd._images import open_image, watchers
from pieceworks.protocols import VolumeNotFound

if TYPE_CHECKING:
    import rados
    import rbd

__all__ = [
    "OBJECT",
    "Entry",
    "clear",
    "entries",
    "record",
    "undo",
    "undo_source",
    "undo_target",
]

log = logging.getLogger(__name__)

#: The RADOS object (in each pool) whose omap holds the entries.
OBJECT: Final = "pieceworks.rbd.inflight"
_MAX_ENTRIES: Final = 100_000
PAIR: Final = "pieceworks.replica."


@dataclass(frozen=True)
class Entry:
    """One step under way: its key, owner tag, start (Unix seconds) and fields."""

    key: str
    owner: str
    started: float
    fields: Mapping[str, str]

    def state(self) -> tuple[bool, str]:
        """(left behind, why): left behind only if its owner died on this host."""
        age = max(0.0, time.time() - self.started)
        left, why = _files.temporary_owner_state(self.owner, age)
        if left and "another host" in why:
            return False, f"its owner is on another host (started {age:.0f} s ago)"
        return left, why.replace("writer", "owner")


def record(ioctx: rados.Ioctx, key: str, **fields: str) -> Entry:
    """Record step `key` as this process's (replacing an entry of the same key)."""
    entry = Entry(key, _files.owned_tag(), time.time(), fields)
    value = json.dumps({"owner": entry.owner, "started": entry.started, **fields})
    binding, _ = bindings()
    with errors(f"cannot record replication step {key!r}"), binding.WriteOpCtx() as op:
        ioctx.set_omap(op, (key,), (value.encode(),))
        ioctx.operate_write_op(op, OBJECT)
    return entry


def clear(ioctx: rados.Ioctx, key: str) -> None:
    """Remove entry `key` (absent is fine)."""
    binding, _ = bindings()
    with errors(f"cannot clear replication step {key!r}"), binding.WriteOpCtx() as op:
        ioctx.remove_omap_keys(op, (key,))
        with contextlib.suppress(binding.ObjectNotFound):
            ioctx.operate_write_op(op, OBJECT)


def entries(ioctx: rados.Ioctx, prefix: str = "") -> list[Entry]:
    """The entries of the pool whose key starts with `prefix`, by key."""
    binding, _ = bindings()
    found: list[Entry] = []
    with errors("cannot read the replication steps under way"), binding.ReadOpCtx() as op:
        pairs, _ = ioctx.get_omap_vals(op, "", prefix, _MAX_ENTRIES)
        try:
            ioctx.operate_read_op(op, OBJECT)
        except binding.ObjectNotFound:
            return []
        for key, raw in pairs:
            try:
                doc = json.loads(raw)
                owner, started = str(doc.pop("owner")), float(doc.pop("started"))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring an unreadable replication step %r: %r", key, raw)
                continue
            found.append(Entry(str(key), owner, started, {k: str(v) for k, v in doc.items()}))
    return sorted(found, key=lambda e: e.key)


def get(ioctx: rados.Ioctx, key: str) -> Entry | None:
    """The entry `key`, if any."""
    for entry in entries(ioctx, key):
        if entry.key == key:
            return entry
    return None


def undo_source(ioctx: rados.Ioctx, entry: Entry) -> str:
    """Remove the source points a dead replication left; say what was done.

    Every ``pw-repl-<tag>-*`` snapshot of the source volume but the one its
    pairing (``pieceworks.replica.<tag>``) names is removed, and a kept
    snapshot of someone else (the caller's temporary snapshot) is forgotten
    (its own cleanup removes it).
    """
    volume, tag = entry.fields["volume"], entry.fields["tag"]
    prefix = f"{tracking.REPLICA}{tag}-"
    removed: list[str] = []
    try:
        with open_image(ioctx, volume) as head, errors(f"cannot undo {entry.key!r}"):
            paired = _paired_snap_id(head, tag)
            snaps = tracking.snapshots(head)
            for snap_id, name in sorted(snaps.items()):
                if name.startswith(prefix) and snap_id != paired:
                    tracking.drop(head, snap_id)
                    removed.append(name)
            for snap_id, name in tracking.kept(head).items():
                if name.startswith(prefix) and snap_id != paired:
                    tracking.forget(head, snap_id)
    except VolumeNotFound:
        pass
    clear(ioctx, entry.key)
    return f"removed snapshot(s) {', '.join(removed)}" if removed else "nothing left to remove"


def _paired_snap_id(head: rbd.Image, tag: str) -> int | None:
    _, binding = bindings()
    try:
        return int(head.metadata_get(f"{PAIR}{tag}").split(":", 1)[0])
    except (KeyError, ValueError, binding.ImageNotFound, binding.ObjectNotFound):
        return None


def undo_target(ioctx: rados.Ioctx, entry: Entry) -> tuple[bool, str]:
    """Roll a target a dead replication wrote in place back; (done, what was done).

    Not done (the entry stays) while a client still watches the image (a
    killed client's watch lasts until Ceph times it out, 30 s by default):
    rolling back would wait for it.
    """
    volume, image_id = entry.fields["volume"], entry.fields["image_id"]
    undo_snap, new_snap = entry.fields["undo"], entry.fields["target_snap"]
    created_undo = entry.fields.get("created_undo") == "1"
    if watchers(ioctx, volume):
        return False, "a client's watch on the image has not expired (30 s)"
    what = "the image was replaced since"
    try:
        with open_image(ioctx, volume) as copy, errors(f"cannot undo {entry.key!r}"):
            if copy.id() == image_id:
                what = "nothing was written yet"
                if copy.snap_exists(undo_snap):
                    copy.rollback_to_snap(undo_snap)
                    what = f"rolled back to snapshot {undo_snap!r}"
                    if created_undo:
                        copy.remove_snap(undo_snap)
                if copy.snap_exists(new_snap):
                    copy.remove_snap(new_snap)
    except VolumeNotFound:
        what = "the image is gone"
    clear(ioctx, entry.key)
    return True, what


def undo(ioctx: rados.Ioctx, entry: Entry) -> tuple[bool, str]:
    """Undo `entry` of a dead owner by its kind; (done, what was done)."""
    if entry.key.startswith("dst."):
        return undo_target(ioctx, entry)
    return True, undo_source(ioctx, entry)
