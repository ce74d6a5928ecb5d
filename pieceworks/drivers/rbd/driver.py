"""`RbdDriver`: Ceph RBD images as volumes, through librbd.

Capabilities: snapshot, stream-out, stream-in, allocated-extents,
changed-blocks and replicate-to-peer (native, incremental). See
``pieceworks/drivers/rbd/__init__.py`` for the whole picture and
docs/drivers.md for configuration.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from pieceworks.drivers.rbd import _inflight as inflight
from pieceworks.drivers.rbd import _tracking as tracking
from pieceworks.drivers.rbd._cluster import Cluster, Options, bindings, errors
from pieceworks.drivers.rbd._images import (
    allocated,
    changed_since,
    hidden_name,
    open_image,
    remove_image,
    sweep_hidden,
)
from pieceworks.drivers.rbd._io import RbdReader, RbdWriter
from pieceworks.drivers.rbd._replicate import replicate
from pieceworks.protocols import (
    AllocatedExtents,
    BackendError,
    BackendSpec,
    ChangedBlocks,
    ChangeTrackingLost,
    ConfigError,
    Extent,
    ReplicatedVolume,
    ReplicateToPeer,
    Snapshot,
    SnapshotNotFound,
    SnapshotRef,
    Source,
    StreamIn,
    StreamOut,
    TransientError,
    VolumeNotFound,
    VolumeReader,
    VolumeRef,
    VolumeWriter,
    validate_id,
)

if TYPE_CHECKING:
    import rados
    import rbd

__all__ = ["RbdDriver"]

log = logging.getLogger(__name__)

_TOKEN = "rbd1"
#: Change-tracking bases kept when a new one is taken (the newest ones).
KEPT_BASES = 2


class RbdDriver(Snapshot, StreamOut, StreamIn, AllocatedExtents, ChangedBlocks, ReplicateToPeer):
    """Volumes are the RBD images of one pool (images whose name is a valid volume id).

    Options (a backend section, or a peer's `BackendSpec`): ``pool``
    (required), ``conf`` (path of a ceph.conf; default: librados' search),
    ``client`` (cephx user, default ``admin``), ``keyring`` (its keyring
    file, optional), ``timeout`` (seconds a librados call may take, default
    30). Nothing is contacted until the first call that needs the cluster.
    """

    def __init__(self, **options: object) -> None:
        self._options = Options.parse(options)
        self._cluster = Cluster(self._options)

    def __repr__(self) -> str:
        return f"RbdDriver(pool={self._options.pool!r}, conf={self._options.conf!r})"

    @property
    def options(self) -> Options:
        """The parsed configuration."""
        return self._options

    def close(self) -> None:
        """Disconnect from the cluster (a later call reconnects)."""
        self._cluster.close()

    # -- snapshot ---------------------------------------------------------

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        snapshot = SnapshotRef(volume.volume_id, validate_id("snapshot id", snapshot_id))
        with (
            self._writing(),
            self._head(volume) as image,
            errors(f"cannot snapshot volume {volume.volume_id!r} as {snapshot_id!r}"),
        ):
            image.create_snap(snapshot_id)
        return snapshot

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        """Delete `snapshot`; one the driver keeps (a change token's base) is renamed instead.

        A snapshot that `change_token` or a replication made a base or a
        replication point keeps its point in time under its ``pw-base-``/
        ``pw-repl-`` name; its own name is gone either way. A snapshot that
        does not exist is looked up read-only: deleting it writes nothing, so
        it never waits on a pool that holds writes (a full one), as the
        cleanup of a snapshot never taken did.
        """
        try:
            with (
                self._head(snapshot.volume, read_only=True) as image,
                errors(f"cannot delete {snapshot}"),
            ):
                if not image.snap_exists(snapshot.snapshot_id):
                    return
            with (
                self._writing(),
                self._head(snapshot.volume) as image,
                errors(f"cannot delete {snapshot}"),
            ):
                tracking.release(image, snapshot.snapshot_id)
        except VolumeNotFound:
            return

    # -- stream-out -------------------------------------------------------

    def open_read(self, source: Source) -> VolumeReader:
        image = self._open_source(source)
        try:
            with errors(f"cannot read {source}"):
                size = image.size()
        except BaseException:
            image.close()
            raise
        return RbdReader(image, size, str(source))

    # -- stream-in --------------------------------------------------------

    def open_write(self, target: VolumeRef, size: int) -> VolumeWriter:
        if size < 0:
            raise ValueError(f"negative volume size {size}")
        volume_id = validate_id("volume id", target.volume_id)
        _, binding = bindings()
        ioctx = self._cluster.ioctx()
        temp = hidden_name("in", volume_id)
        with self._writing(), errors(f"cannot create volume {volume_id!r}"):
            binding.RBD().create(ioctx, temp, size, old_format=False)
        try:
            with errors(f"cannot open the new image of volume {volume_id!r}"):
                image = binding.Image(ioctx, temp)
        except BaseException:
            remove_image(ioctx, temp)
            raise
        return RbdWriter(ioctx, image, temp, volume_id, size)

    # -- allocated-extents ------------------------------------------------

    def allocated_extents(self, source: Source) -> Sequence[Extent]:
        image = self._open_source(source)
        try:
            with errors(f"cannot map the extents of {source}"):
                return allocated(image)
        finally:
            image.close()

    # -- changed-blocks ---------------------------------------------------

    def change_token(self, source: Source) -> str:
        """A token naming a snapshot of `source` that the driver keeps as a base.

        `source` a snapshot: that snapshot becomes the base (deleting it
        later renames it ``pw-base-<id>``); a volume: a new snapshot
        ``pw-base-<id>`` is taken. Bases older than the two newest existing
        ones are removed first (`KEPT_BASES`), so a volume has at most three
        while a backup runs: the base of the last backup survives one that
        failed, or was killed, after taking its own.
        """
        with (
            self._writing(),
            self._head(VolumeRef(source.volume_id)) as image,
            errors(f"cannot track changes of {source}"),
        ):
            snaps = tracking.snapshots(image)
            bases = self._bases(image, snaps)
            for snap_id in bases[:-KEPT_BASES]:
                tracking.drop(image, snap_id)
            if isinstance(source, SnapshotRef):
                if not image.snap_exists(source.snapshot_id):
                    raise SnapshotNotFound(f"no {source}")
                snap_id = image.snap_get_id(source.snapshot_id)
            else:
                temporary = f"{tracking.BASE}new-{secrets.token_hex(6)}"
                image.create_snap(temporary)
                snap_id = image.snap_get_id(temporary)
                image.rename_snap(temporary, f"{tracking.BASE}{snap_id}")
            tracking.keep(image, snap_id, f"{tracking.BASE}{snap_id}")
            return f"{_TOKEN}:{image.id()}:{snap_id}"

    def changed_extents(self, source: Source, since: str) -> Sequence[Extent]:
        """The ranges changed since the base snapshot `since` names (RBD's diff).

        Over-reports (safely) at object granularity: for an object (4 MiB by
        default) that did not exist in the base, RBD reports from the
        object's start to the end of its data. Afterwards the bases older
        than `since`'s are removed (it and the newer ones stay: a backup that
        fails after this call leaves its parent's base, so the next
        incremental still reads only what changed); after a lost token, all
        but the `KEPT_BASES` newest. `ChangeTrackingLost` if the token is
        not one of this driver's, or names another image or a snapshot that
        is gone.
        """
        try:
            kind, image_id, snap_text = since.split(":")
            snap_id = int(snap_text)
        except ValueError:
            raise ChangeTrackingLost(f"not an rbd change token: {since!r}") from None
        if kind != _TOKEN:
            raise ChangeTrackingLost(f"not an rbd change token: {since!r}")
        kept_from: int | None = None
        try:
            image = self._open_source(source)
            try:
                with errors(f"cannot diff {source}"):
                    if image.id() != image_id:
                        raise ChangeTrackingLost(
                            f"volume {source.volume_id!r} is another image than when token"
                            f" {since!r} was issued"
                        )
                    base = tracking.snapshots(image).get(snap_id)
                    if base is None:
                        raise ChangeTrackingLost(
                            f"the base snapshot (id {snap_id}) of token {since!r} is gone"
                        )
                    changed = changed_since(image, base)
                    kept_from = snap_id
                    return changed
            finally:
                image.close()
        finally:
            self._drop_old_bases(VolumeRef(source.volume_id), kept_from)

    # -- replicate-to-peer ------------------------------------------------

    def accepts_peer(self, peer: BackendSpec) -> bool:
        """An rbd backend whose configuration is valid here (its ceph.conf readable)."""
        if peer.driver != "rbd":
            return False
        try:
            Options.parse(peer.options)
        except ConfigError:
            return False
        return True

    def replicate_to(
        self, source: Source, peer: BackendSpec, target: VolumeRef
    ) -> ReplicatedVolume:
        if not self.accepts_peer(peer):
            raise BackendError(f"rbd driver cannot reach backend {peer.name!r} directly")
        options = Options.parse(peer.options)
        if options.same_cluster_as(self._options):
            return replicate(self._cluster, source, _PoolView(self._cluster, options), target)
        other = Cluster(options)
        try:
            return replicate(self._cluster, source, other, target)
        finally:
            other.close()

    # -- plain helpers for tests, the CLI and the demo (not capabilities) ----

    def sweep_temporary(self, *, dry_run: bool = False) -> list[tuple[str, bool, str]]:
        """Undo what dead processes left in the pool: hidden images, native replications.

        Returns ``(item, left_behind, reason)`` for each hidden image of the
        pool (``.pw-in.*``, ``.pw-old.*``: left-behind ones are removed, see
        `sweep_hidden`) and each native replication step under way
        (``<volume>@replication-source.<tag>``: the points a killed run took
        are removed; ``<volume>@replication-target``: a target a killed run
        wrote in place is rolled back to the last common snapshot; see
        `_inflight`). Nothing is changed if `dry_run`. Used by ``pieceworks
        recover``.
        """
        ioctx = self._cluster.ioctx()
        found = sweep_hidden(ioctx, dry_run=dry_run)
        for entry in inflight.entries(ioctx):
            kind, _, rest = entry.key.partition(".")
            if kind == "dst":
                item = f"{rest}@replication-target"
            else:
                volume, _, tag = rest.rpartition(".")
                item = f"{volume}@replication-source.{tag}"
            left, why = entry.state()
            if left and not dry_run:
                done, how = inflight.undo(ioctx, entry)
                if not done:
                    left, why = False, f"{why}; kept for now: {how}"
                else:
                    why = f"{why}; {how}"
            found.append((item, left, why))
        return found

    def list_volumes(self) -> list[VolumeRef]:
        """Every image of the pool whose name is a valid volume id, sorted."""
        _, binding = bindings()
        with errors(f"cannot list the images of pool {self._options.pool!r}"):
            names = binding.RBD().list(self._cluster.ioctx())
        out = []
        for name in sorted(names):
            try:
                out.append(VolumeRef(name))
            except ValueError:
                continue
        return out

    def create_volume(self, volume_id: str, size: int) -> VolumeRef:
        """Create an empty (thin) volume of `size` bytes; `BackendError` if it exists."""
        _, binding = bindings()
        validate_id("volume id", volume_id)
        with self._writing(), errors(f"cannot create volume {volume_id!r}"):
            binding.RBD().create(self._cluster.ioctx(), volume_id, size, old_format=False)
        return VolumeRef(volume_id)

    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume and its snapshots. Deleting a missing one is not an error."""
        remove_image(self._cluster.ioctx(), validate_id("volume id", volume_id))

    def snapshot_names(self, volume: VolumeRef) -> list[str]:
        """The names of the volume's snapshots, oldest first."""
        with self._head(volume, read_only=True) as image:
            snaps = tracking.snapshots(image)
        return [snaps[i] for i in sorted(snaps)]

    # -- internals ----------------------------------------------------------

    def _head(
        self, volume: VolumeRef, *, read_only: bool = False
    ) -> AbstractContextManager[rbd.Image]:
        validate_id("volume id", volume.volume_id)
        return open_image(self._cluster.ioctx(), volume.volume_id, read_only=read_only)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Say why a write timed out when the OSD map tells (a full pool): `BackendError`.

        Ceph holds a write to a full pool (or while writes are paused)
        instead of failing it, so librados gives up after `timeout` seconds
        with a bare timeout; the map then names the cause, which trying
        again at once does not cure. Other timeouts stay `TransientError`.
        """
        try:
            yield
        except TransientError as exc:
            reason = self._cluster.write_blocker()
            if reason is None:
                raise
            raise BackendError(f"{exc}; {reason}") from exc

    def _open_source(self, source: Source) -> rbd.Image:
        """Open a volume or snapshot read-only (the caller closes it)."""
        _, binding = bindings()
        validate_id("volume id", source.volume_id)
        with errors(
            f"cannot open volume {source.volume_id!r}",
            VolumeNotFound,
            absent=f"no volume {source.volume_id!r}",
        ):
            image: rbd.Image = binding.Image(
                self._cluster.ioctx(), source.volume_id, read_only=True
            )
        if isinstance(source, SnapshotRef):
            try:
                validate_id("snapshot id", source.snapshot_id)
                with errors(f"cannot open {source}"):
                    if not image.snap_exists(source.snapshot_id):
                        raise SnapshotNotFound(f"no {source}")
                    image.set_snap(source.snapshot_id)
            except BaseException:
                image.close()
                raise
        return image

    @staticmethod
    def _bases(image: rbd.Image, snaps: dict[int, str]) -> list[int]:
        """Ids of the change-tracking bases that still exist, oldest first; forget the rest."""
        bases = []
        for snap_id, name in tracking.kept(image).items():
            if not name.startswith(tracking.BASE):
                continue
            if snap_id in snaps:
                bases.append(snap_id)
            else:
                tracking.forget(image, snap_id)
        return sorted(bases)

    def _drop_old_bases(self, volume: VolumeRef, kept_from: int | None) -> None:
        """Remove the bases older than `kept_from`; None: all but the `KEPT_BASES` newest."""
        try:
            with self._head(volume) as image, errors(f"cannot clean up bases of {volume}"):
                bases = self._bases(image, tracking.snapshots(image))
                if kept_from is None:
                    old = bases[:-KEPT_BASES]
                else:
                    old = [b for b in bases if b < kept_from]
                for snap_id in old:
                    tracking.drop(image, snap_id)
        except (BackendError, VolumeNotFound) as exc:
            log.warning("old change-tracking snapshots of %s stay: %s", volume.volume_id, exc)


class _PoolView(Cluster):
    """Another pool of an already connected cluster: shares its connection."""

    def __init__(self, cluster: Cluster, options: Options) -> None:
        super().__init__(options)
        self._shared = cluster

    def handle(self) -> rados.Rados:
        return self._shared.handle()

    def ioctx(self, pool: str | None = None) -> rados.Ioctx:
        return self._shared.ioctx(pool or self.options.pool)

    def fsid(self) -> str:
        return self._shared.fsid()

    def close(self) -> None:
        """Nothing to close: the connection belongs to the shared cluster."""
