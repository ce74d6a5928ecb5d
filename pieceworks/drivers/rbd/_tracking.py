"""Snapshots the rbd driver keeps: change-tracking bases and replication points.

A snapshot the driver hands out as a change token (changed-blocks) or keeps
as the last common snapshot of a replication must outlive the temporary
snapshot it was taken as. The driver records such a snapshot in the image's
metadata, ``pieceworks.keep.<snap-id> = <name>``; `release` (what
`delete_snapshot` does) then renames it to ``<name>`` instead of removing it,
so the temporary name goes away as the caller expects while the
point-in-time stays. Snapshot ids are never reused in a pool, so an id names
one point in time for good.

Names: ``pw-base-<id>`` for change-tracking bases, ``pw-repl-<tag>-<id>``
for replication points (`tag` names the peer image). Only snapshots whose
name starts with ``pw-`` are ever removed by the driver on its own; another
snapshot that was kept is merely forgotten.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

from pieceworks.drivers.rbd._cluster import bindings

if TYPE_CHECKING:
    import rbd

__all__ = [
    "BASE",
    "REPLICA",
    "drop",
    "forget",
    "keep",
    "kept",
    "release",
    "snapshots",
]

KEEP: Final = "pieceworks.keep."
BASE: Final = "pw-base-"
REPLICA: Final = "pw-repl-"
_OURS: Final = "pw-"


def snapshots(image: rbd.Image) -> dict[int, str]:
    """The image's snapshots: id -> name."""
    return {int(s["id"]): str(s["name"]) for s in image.list_snaps()}


def kept(image: rbd.Image) -> dict[int, str]:
    """The snapshots the driver keeps: id -> the name they are kept under."""
    out: dict[int, str] = {}
    for key, value in image.metadata_list():
        if key.startswith(KEEP) and key[len(KEEP) :].isdigit():
            out[int(key[len(KEEP) :])] = value
    return out


def keep(image: rbd.Image, snap_id: int, name: str) -> None:
    """Keep snapshot `snap_id` under `name` when it is released."""
    image.metadata_set(f"{KEEP}{snap_id}", name)


def forget(image: rbd.Image, snap_id: int) -> None:
    """Stop keeping snapshot `snap_id` (the snapshot itself stays)."""
    _, binding = bindings()
    with contextlib.suppress(KeyError, binding.ImageNotFound, binding.ObjectNotFound):
        image.metadata_remove(f"{KEEP}{snap_id}")


def release(image: rbd.Image, name: str) -> None:
    """What deleting snapshot `name` means: rename it if it is kept, else remove it."""
    _, binding = bindings()
    if not image.snap_exists(name):
        return
    snap_id = image.snap_get_id(name)
    keep_as = kept(image).get(snap_id)
    if keep_as is None:
        _remove(image, name)
    elif keep_as != name:
        with contextlib.suppress(binding.ImageExists):  # a racing release renamed it
            image.rename_snap(name, keep_as)


def drop(image: rbd.Image, snap_id: int) -> None:
    """Stop keeping snapshot `snap_id`, and remove it if it is the driver's own."""
    name = snapshots(image).get(snap_id)
    if name is not None and name.startswith(_OURS):
        _remove(image, name)
    forget(image, snap_id)


def _remove(image: rbd.Image, name: str) -> None:
    _, binding = bindings()
    with contextlib.suppress(binding.ImageNotFound, binding.ObjectNotFound):
        if image.is_protected_snap(name):
            image.unprotect_snap(name)
        image.remove_snap(name)
