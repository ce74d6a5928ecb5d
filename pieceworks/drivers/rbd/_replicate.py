"""Native, incremental replication between two rbd backends (replicate-to-peer).

The semantics of ``rbd export-diff`` / ``rbd import-diff``, through librbd:

* a point in time of the source is chosen: the snapshot asked for, or a new
  snapshot ``pw-repl-<tag>-<id>`` of the volume (`tag` names the peer
  cluster, pool and image, so one volume can replicate to several peers);
* if the source and the target still share the last replicated point (the
  source keeps it as a snapshot, the target has a snapshot of the same
  name, and the target image is the one written then), only the ranges that
  changed since it are copied: those the source changed, and those the
  target changed itself (they are put back), zero ranges as
  ``write_zeroes``; if the copy fails the target is rolled back (to the
  common snapshot, or to a snapshot taken first when it had changes of its
  own);
* otherwise the whole source is copied (allocated ranges only) into a new
  hidden image that replaces the target on success;
* afterwards the new point exists on both sides, as snapshots of the same
  name, and the previous one is removed from both.

The source records the pairing in its image metadata,
``pieceworks.replica.<tag> = <source snap id>:<target image id>:<target snap name>``.

Killed mid-way (SIGKILL: no rollback runs), a run leaves its steps recorded
in each pool (`_inflight`): the next replication of the pair, or ``pieceworks
recover``, rolls a target written in place back to the common snapshot and
removes the points the dead run took; a run of the pair that is still alive
makes another one fail (`BackendError`) rather than write the same target.
The failpoint ``replicate.chunk-copied`` marks each piece written.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import TYPE_CHECKING, Final

from pieceworks.drivers.rbd import _inflight as inflight
from pieceworks.drivers.rbd import _tracking as tracking
from pieceworks.drivers.rbd._cluster import Cluster, bindings, errors, short_hash
from pieceworks.drivers.rbd._images import (
    allocated,
    changed_since,
    hidden_name,
    open_image,
    union,
    watchers,
)
from pieceworks.drivers.rbd._io import RbdWriter, write_nonzero
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    BackendError,
    Extent,
    ReplicatedVolume,
    SnapshotNotFound,
    SnapshotRef,
    Source,
    TransientError,
    VolumeNotFound,
    VolumeRef,
)

if TYPE_CHECKING:
    import rados
    import rbd

__all__ = ["replicate"]

PIECE: Final = 4 << 20  # bytes read from the source per librbd call
_PAIR: Final = inflight.PAIR

log = logging.getLogger(__name__)


def replicate(
    source_cluster: Cluster, source: Source, peer: Cluster, target: VolumeRef
) -> ReplicatedVolume:
    """Copy `source` into `target` of `peer` (see the module docstring)."""
    src_io = source_cluster.ioctx()
    dst_io = peer.ioctx()
    fsid_here, fsid_there = source_cluster.fsid(), peer.fsid()
    same = (fsid_here, source_cluster.options.pool, source.volume_id) == (
        fsid_there,
        peer.options.pool,
        target.volume_id,
    )
    if same:
        raise BackendError(f"source and target are the same image {source.volume_id!r}")
    tag = short_hash(fsid_there, peer.options.pool, target.volume_id)
    pair_key = f"{_PAIR}{tag}"
    step = f"src.{source.volume_id}.{tag}"
    _settle(src_io, step, f"replication of {source.volume_id!r} to {target.volume_id!r}")
    _settle(dst_io, f"dst.{target.volume_id}", f"replication into {target.volume_id!r}")
    inflight.record(src_io, step, volume=source.volume_id, tag=tag)
    try:
        with open_image(src_io, source.volume_id) as head:
            with errors(f"cannot snapshot volume {source.volume_id!r} for replication"):
                point_name, point_id, created = _point(head, source, tag)
            target_snap = f"{tracking.REPLICA}{tag}-{point_id}"
            try:
                with errors(f"cannot replicate {source} to {target.volume_id!r}"):
                    tracking.keep(head, point_id, target_snap)
                    previous = _common(head, pair_key, dst_io, target.volume_id)
                    _drop_strays(dst_io, target.volume_id, tag, previous)
                    with open_image(src_io, source.volume_id, point_name, read_only=True) as point:
                        size = point.size()
                        if previous is None:
                            sent = _full(point, dst_io, target.volume_id, target_snap)
                        else:
                            sent = _incremental(
                                point, previous, dst_io, target.volume_id, target_snap
                            )
                    with open_image(dst_io, target.volume_id, read_only=True) as copy:
                        target_id = copy.id()
                    head.metadata_set(pair_key, f"{point_id}:{target_id}:{target_snap}")
            except BaseException:
                with contextlib.suppress(Exception):
                    tracking.forget(head, point_id)
                    if created:
                        head.remove_snap(point_name)
                raise
            with errors("cannot remove the previous replication snapshots"):
                # the previous point, and any a killed run of this pair left
                for snap_id, name in tracking.snapshots(head).items():
                    if snap_id != point_id and name.startswith(f"{tracking.REPLICA}{tag}-"):
                        tracking.drop(head, snap_id)
                if previous is not None:
                    tracking.drop(head, previous[0])
                    with open_image(dst_io, target.volume_id) as copy:
                        if copy.snap_exists(previous[2]):
                            copy.remove_snap(previous[2])
    finally:
        with contextlib.suppress(Exception):
            inflight.clear(src_io, step)
    return ReplicatedVolume(size, sent)


def _settle(ioctx: rados.Ioctx, key: str, what: str) -> None:
    """Undo what a dead run left under `key`; `BackendError` if a live one runs it now."""
    entry = inflight.get(ioctx, key)
    if entry is None:
        return
    left, why = entry.state()
    if not left:
        if "another host" in why:
            log.warning("taking over the %s left by a run on another host (%s)", what, why)
            return
        raise BackendError(f"another {what} is under way: {why}")
    done, how = inflight.undo(ioctx, entry)
    if not done:
        raise TransientError(f"the {what} a killed run left cannot be undone yet: {how}")
    log.warning("undid the %s a killed run left (%s): %s", what, why, how)


def _drop_strays(
    dst_io: rados.Ioctx, target_name: str, tag: str, previous: tuple[int, str, str] | None
) -> None:
    """Remove the target's ``pw-repl-<tag>-*`` snapshots but the common one (killed runs')."""
    keep = previous[2] if previous is not None else None
    prefix = f"{tracking.REPLICA}{tag}-"
    try:
        with open_image(dst_io, target_name) as copy:
            for name in tracking.snapshots(copy).values():
                if name.startswith(prefix) and name != keep:
                    copy.remove_snap(name)
    except VolumeNotFound:
        return


def _point(head: rbd.Image, source: Source, tag: str) -> tuple[str, int, bool]:
    """(name, id, created by us) of the source's point in time."""
    if isinstance(source, SnapshotRef):
        if not head.snap_exists(source.snapshot_id):
            raise SnapshotNotFound(f"no {source}")
        return source.snapshot_id, head.snap_get_id(source.snapshot_id), False
    temporary = f"{tracking.REPLICA}{tag}-new-{secrets.token_hex(6)}"
    head.create_snap(temporary)
    snap_id = head.snap_get_id(temporary)
    name = f"{tracking.REPLICA}{tag}-{snap_id}"
    head.rename_snap(temporary, name)
    return name, snap_id, True


def _common(
    head: rbd.Image, pair_key: str, dst_io: rados.Ioctx, target_name: str
) -> tuple[int, str, str] | None:
    """(source snap id, its name, target snap name) of the last common point, if intact."""
    _, binding = bindings()
    try:
        value = head.metadata_get(pair_key)
    except (KeyError, binding.ImageNotFound, binding.ObjectNotFound):
        return None
    try:
        snap_id_text, target_id, target_snap = value.split(":", 2)
        snap_id = int(snap_id_text)
    except ValueError:
        return None
    name = tracking.snapshots(head).get(snap_id)
    if name is None:
        return None
    try:
        with open_image(dst_io, target_name, read_only=True) as copy:
            if copy.id() != target_id or not copy.snap_exists(target_snap):
                return None
    except VolumeNotFound:
        return None
    return snap_id, name, target_snap


def _copy(
    point: rbd.Image, dst: rbd.Image, extents: list[Extent], size: int, *, zero_fill: bool
) -> int:
    """Copy `extents` of `point` into `dst`; return the data bytes written."""
    sent = 0
    for e in extents:
        offset, end = e.offset, min(e.end, size)
        while offset < end:
            n = min(PIECE - offset % PIECE, end - offset)
            data = point.read(offset, n)
            if len(data) < n:  # beyond what the source holds: zeros
                data += bytes(n - len(data))
            sent += write_nonzero(dst, offset, data, zero_fill=zero_fill)
            offset += n
            failpoint("replicate.chunk-copied")
    return sent


def _full(point: rbd.Image, dst_io: rados.Ioctx, target_name: str, target_snap: str) -> int:
    """Copy the allocated ranges of `point` into a new image that replaces `target_name`."""
    _, binding = bindings()
    size = point.size()
    temp = hidden_name("in", target_name)
    binding.RBD().create(dst_io, temp, size, old_format=False)
    writer = RbdWriter(dst_io, binding.Image(dst_io, temp), temp, target_name, size)
    try:
        sent = _copy(point, writer.image, allocated(point), size, zero_fill=False)
        writer.image.create_snap(target_snap)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return sent


def _incremental(
    point: rbd.Image,
    previous: tuple[int, str, str],
    dst_io: rados.Ioctx,
    target_name: str,
    target_snap: str,
) -> int:
    """Apply the changes since `previous` to `target_name`, in place; roll back on failure."""
    _, from_name, prev_target_snap = previous
    busy = watchers(dst_io, target_name)
    if busy:
        raise BackendError(
            f"volume {target_name!r} is in use ({busy} client(s) have it open); not replicating"
            " into it"
        )
    size = point.size()
    step = f"dst.{target_name}"
    with open_image(dst_io, target_name) as copy:
        own_changes = changed_since(copy, prev_target_snap)
        # The point to roll back to on failure: the common snapshot itself when the
        # target still equals it (the usual case: no snapshot to create and remove).
        undo = prev_target_snap
        if own_changes:
            undo = f"pw-undo-{secrets.token_hex(6)}"
        inflight.record(
            dst_io,
            step,
            volume=target_name,
            image_id=copy.id(),
            undo=undo,
            created_undo="1" if undo != prev_target_snap else "0",
            target_snap=target_snap,
        )
        if undo != prev_target_snap:
            copy.create_snap(undo)
        try:
            if copy.size() != size:
                copy.resize(size)
            extents = union(changed_since(point, from_name), own_changes)
            sent = _copy(point, copy, extents, size, zero_fill=True)
            copy.create_snap(target_snap)
        except BaseException:
            with contextlib.suppress(Exception):
                copy.rollback_to_snap(undo)
                if copy.snap_exists(target_snap):
                    copy.remove_snap(target_snap)
            if undo != prev_target_snap:
                with contextlib.suppress(Exception):
                    copy.remove_snap(undo)
            with contextlib.suppress(Exception):
                inflight.clear(dst_io, step)
            raise
        if undo != prev_target_snap:
            copy.remove_snap(undo)
    inflight.clear(dst_io, step)
    return sent
