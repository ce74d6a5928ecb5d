"""Image-level helpers over librbd: names, extents, removal and atomic replacement.

Hidden names: a volume id starts with a letter or digit (`validate_id`), so
images whose names start with ``.`` are never volumes; the driver builds a
new volume under ``.pw-in.<volume-id>.<tag>`` and moves a replaced one to
``.pw-old.<volume-id>.<tag>`` before removing it. The tag names the process
doing it (`pieceworks.drivers._files.owned_tag`: host, pid, start time), so
that `sweep_hidden` can tell the images of a killed process from those of a
live one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pieceworks.drivers import _files
from pieceworks.drivers.rbd._cluster import bindings, errors
from pieceworks.protocols import BackendError, Extent, VolumeNotFound

if TYPE_CHECKING:
    import rados
    import rbd

__all__ = [
    "allocated",
    "changed_since",
    "hidden_name",
    "open_image",
    "remove_image",
    "replace_image",
    "sweep_hidden",
    "watchers",
]

log = logging.getLogger(__name__)


def hidden_name(kind: str, volume_id: str) -> str:
    """``.pw-<kind>.<volume-id>.<random>``: an image name no volume id can take."""
    return f".pw-{kind}.{volume_id}.{_files.owned_tag()}"


def sweep_hidden(ioctx: rados.Ioctx, *, dry_run: bool = False) -> list[tuple[str, bool, str]]:
    """Remove the hidden images of dead processes (not if `dry_run`); judge every one.

    Returns ``(image name, left_behind, reason)`` for each ``.pw-in.*`` and
    ``.pw-old.*`` image: one whose process died (the name says which, see
    `hidden_name`) is left behind and removed, one of a live process (or of
    another host, unless untouched for an hour) kept. A ``.pw-old`` image
    whose volume is missing is the only copy of that volume (the process
    died between moving it aside and moving the new one in, so what was to
    replace it never committed): it is renamed back to the volume, and the
    reason says so. An image that a client still watches is kept (a killed
    client's watch lasts until Ceph times it out, 30 s by default). Failures
    are `BackendError`.
    """
    _, binding = bindings()
    rbd_api = binding.RBD()
    with errors("cannot list the images of the pool"):
        names = sorted(rbd_api.list(ioctx))
    present = set(names)
    found: list[tuple[str, bool, str]] = []
    for name in names:
        kind, _, rest = name.partition(".")[2].partition(".")
        if name[:1] != "." or kind not in ("pw-in", "pw-old"):
            continue
        left, reason = _files.temporary_owner_state(name, _age(ioctx, name))
        volume = _files.tagged_volume(rest)
        if left and kind == "pw-old" and volume is not None and volume not in present:
            if watchers(ioctx, name):
                left = False
                reason += (
                    f"; kept: volume {volume!r} is missing and this is its only copy; it is"
                    " renamed back once a client's watch on it has expired (30 s)"
                )
            elif dry_run:
                reason += f"; volume {volume!r} is missing: this, its only copy, is renamed back"
            else:
                with errors(f"cannot rename {name!r} back to {volume!r}"):
                    rbd_api.rename(ioctx, name, volume)
                present.add(volume)
                reason += f"; volume {volume!r} was missing: renamed back (its only copy)"
            found.append((name, left, reason))
            continue
        if left and watchers(ioctx, name):
            left = False  # removing it now would wait for Ceph's watch timeout
            reason += "; kept for now: a client's watch on it has not expired (30 s)"
        if left and not dry_run:
            remove_image(ioctx, name)
        found.append((name, left, reason))
    return found


def _age(ioctx: rados.Ioctx, name: str) -> float:
    """Seconds since image `name` was created (0 if librbd cannot tell)."""
    _, binding = bindings()
    try:
        with binding.Image(ioctx, name, read_only=True) as image:
            created = image.create_timestamp()
    except Exception:  # an old librbd, or the image went away: not old
        return 0.0
    return max(0.0, time.time() - float(created.timestamp()))


@contextmanager
def open_image(
    ioctx: rados.Ioctx,
    name: str,
    snapshot: str | None = None,
    *,
    read_only: bool = False,
    what: str = "",
) -> Iterator[rbd.Image]:
    """Open image `name` (at `snapshot`); `VolumeNotFound` if it does not exist.

    Any other failure (a timeout: a full pool holds the write that opening
    for writing is) is a `BackendError` prefixed by `what` (default
    ``cannot open volume 'name'``).
    """
    _, binding = bindings()
    with errors(
        what or f"cannot open volume {name!r}", VolumeNotFound, absent=f"no volume {name!r}"
    ):
        image: rbd.Image = binding.Image(ioctx, name, snapshot=snapshot, read_only=read_only)
    try:
        yield image
    finally:
        image.close()


def extents_of(image: rbd.Image, size: int, from_snapshot: str | None) -> list[Extent]:
    """Sorted, merged ranges `image` (at its current snapshot) differs from `from_snapshot`.

    ``None``: from nothing (the allocated ranges). Discarded ranges count as
    changed (they now read as zeros).
    """
    out: list[Extent] = []

    def seen(offset: int, length: int, exists: bool) -> None:
        end = min(offset + length, size)
        if end <= offset:
            return
        if from_snapshot is None and not exists:
            return
        if out and out[-1].end >= offset:
            last = out.pop()
            out.append(Extent(last.offset, max(last.end, end) - last.offset))
        else:
            out.append(Extent(offset, end - offset))

    if size:
        image.diff_iterate(0, size, from_snapshot, seen)
    out.sort()
    return _merged(out)


def _merged(extents: list[Extent]) -> list[Extent]:
    merged: list[Extent] = []
    for e in extents:
        if merged and merged[-1].end >= e.offset:
            last = merged.pop()
            merged.append(Extent(last.offset, max(last.end, e.end) - last.offset))
        else:
            merged.append(e)
    return merged


def allocated(image: rbd.Image) -> list[Extent]:
    """The ranges of `image` (at its current snapshot) that may hold data."""
    return extents_of(image, image.size(), None)


def changed_since(image: rbd.Image, snapshot: str) -> list[Extent]:
    """The ranges of `image` (at its current snapshot) that changed since `snapshot`."""
    return extents_of(image, image.size(), snapshot)


def union(a: list[Extent], b: list[Extent]) -> list[Extent]:
    """Sorted, merged union of two extent lists."""
    return _merged(sorted([*a, *b]))


def watchers(ioctx: rados.Ioctx, name: str) -> int:
    """How many clients have image `name` open for writing (0 if it does not exist)."""
    try:
        with open_image(ioctx, name, read_only=True) as image:
            return len(list(image.watchers_list()))
    except VolumeNotFound:
        return 0


def remove_image(ioctx: rados.Ioctx, name: str) -> None:
    """Remove image `name` and its snapshots; one that does not exist is fine.

    Raise `BackendError` if it has clones or is open by a client.
    """
    _, binding = bindings()
    try:
        with (
            open_image(ioctx, name) as image,
            errors(f"cannot remove the snapshots of image {name!r}"),
        ):
            for snap in list(image.list_snaps()):
                if image.is_protected_snap(snap["name"]):
                    image.unprotect_snap(snap["name"])
                image.remove_snap(snap["name"])
    except VolumeNotFound:
        return
    try:
        with errors(f"cannot remove image {name!r}"):
            binding.RBD().remove(ioctx, name)
    except BackendError:
        if watchers(ioctx, name) == 0 and name not in binding.RBD().list(ioctx):
            return  # removed by a racing call
        raise


def replace_image(ioctx: rados.Ioctx, new: str, final: str) -> None:
    """Make image `new` the image `final`, replacing (and removing) an existing one.

    Refuses (`BackendError`, nothing changed) to replace an image that a
    client has open or that has clones. The old image is first renamed
    aside, so a failure never leaves neither.
    """
    _, binding = bindings()
    rbd_api = binding.RBD()
    old: str | None = None
    if final in rbd_api.list(ioctx):
        busy = watchers(ioctx, final)
        if busy:
            raise BackendError(
                f"volume {final!r} is in use ({busy} client(s) have it open); not replacing it"
            )
        with open_image(ioctx, final, read_only=True) as image:
            for snap in list(image.list_snaps()):
                image.set_snap(snap["name"])
                if list(image.list_children2()):
                    raise BackendError(
                        f"volume {final!r} has clones of snapshot {snap['name']!r}; not"
                        " replacing it"
                    )
        old = hidden_name("old", final)
        with errors(f"cannot move volume {final!r} aside"):
            rbd_api.rename(ioctx, final, old)
    try:
        with errors(f"cannot move the new volume into place as {final!r}"):
            rbd_api.rename(ioctx, new, final)
    except BaseException:
        if old is not None:
            rbd_api.rename(ioctx, old, final)
        raise
    if old is not None:
        try:
            remove_image(ioctx, old)
        except BackendError as exc:
            log.warning("replaced volume %r; its old image %r stays: %s", final, old, exc)
