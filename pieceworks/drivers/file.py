"""The reference storage driver: volumes are regular (sparse) files in a directory.

`FileDriver` shows a driver author the whole pattern in one place:

* subclass the capability base classes it implements (`Snapshot`,
  `StreamOut`, `StreamIn`, `AllocatedExtents`, `ReplicateToPeer`) and import nothing but
  `pieceworks.protocols` and the standard library (here also `_files`, the file
  helpers this driver shares with the qcow2 driver and the POSIX store);
* reject unknown options with `ConfigError`;
* turn backend failures into the protocol's errors (`VolumeNotFound`,
  `SnapshotNotFound`, `InvalidName`, `BackendError`), never a bare `OSError`;
* hand out small reader and writer objects (`VolumeReader`, `VolumeWriter`)
  that do no per-call allocation on the data path;
* make every change atomic: build in a temporary name, then rename.

Layout under the directory ``path`` (Linux; names starting with ``.`` are
never valid ids, so they cannot clash with a volume)::

    <path>/<volume-id>                               a volume
    <path>/.snapshots/<volume-id>/<snapshot-id>      a read-only snapshot
    <path>/.incoming/<volume-id>.<random>            a volume being written
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Sequence

from pieceworks.drivers import _files
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    AllocatedExtents,
    BackendError,
    BackendSpec,
    Extent,
    NotFound,
    ReplicatedVolume,
    ReplicateToPeer,
    ShortRead,
    Snapshot,
    SnapshotNotFound,
    SnapshotRef,
    Source,
    StreamIn,
    StreamOut,
    VolumeNotFound,
    VolumeReader,
    VolumeRef,
    VolumeWriter,
    validate_id,
)
from pieceworks.protocols.os_errors import os_error_text

__all__ = ["FileDriver"]

FICLONE = 0x40049409  # ioctl: share all extents of a file (btrfs, XFS, bcachefs, ...)
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}


class FileDriver(Snapshot, StreamOut, StreamIn, AllocatedExtents, ReplicateToPeer):
    """Volumes as files in one directory, with snapshot, stream and extents.

    Replication to another file backend on the same host is native: the
    volume is reflinked or copied extent by extent (``copy_file_range``)
    straight into the peer's directory, never through the manager's buffers.

    `create_snapshot` makes a reflink copy where the filesystem can (instant,
    truly point-in-time) and otherwise a sparse copy of the allocated
    extents, which is point-in-time only if nobody writes the volume during
    the copy. Symbolic links are never followed out of the directory.
    """

    def __init__(self, path: str | os.PathLike[str], **unknown: object) -> None:
        self._root = _files.volume_root("file driver", path, unknown)

    def __repr__(self) -> str:
        return f"FileDriver({self._root!r})"

    @property
    def root(self) -> str:
        """The directory that holds the volumes (resolved)."""
        return self._root

    def sweep_temporary(self, *, dry_run: bool = False) -> list[tuple[str, bool, str]]:
        """Remove temporary files whose writer died (``.incoming``, snapshot copies).

        Returns ``(path, left_behind, reason)`` for each temporary file;
        left-behind ones are removed unless `dry_run`. Used by ``pieceworks
        recover``.
        """
        return _files.sweep_volume_root(self._root, dry_run=dry_run)

    # -- snapshot ---------------------------------------------------------

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        snapshot = SnapshotRef(volume.volume_id, validate_id("snapshot id", snapshot_id))
        src, size = self._open_source(volume)
        tmp = ""
        try:
            final = self._snapshot_path(snapshot, create_parent=True)
            tmp = os.path.join(os.path.dirname(final), f".tmp-{_files.owned_tag()}")
            dst = os.open(tmp, _files.CREATE_FLAGS, 0o600)
            try:
                _clone_or_copy(src, dst, size, str(volume))
                os.fchmod(dst, 0o400)
                os.fsync(dst)
            finally:
                os.close(dst)
            os.link(tmp, final)  # unlike rename, never clobbers an existing snapshot
            _files.fsync_dir(os.path.dirname(final))
        except OSError as exc:
            raise BackendError(
                f"cannot snapshot {volume.volume_id!r}: {os_error_text(exc)}"
            ) from exc
        finally:
            os.close(src)
            if tmp:
                _files.unlink_if_exists(tmp)
        return snapshot

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        _files.unlink_if_exists(self._snapshot_path(snapshot))

    # -- stream-out -------------------------------------------------------

    def open_read(self, source: Source) -> VolumeReader:
        return _FileReader(*self._open_source(source))

    # -- stream-in --------------------------------------------------------

    def open_write(self, target: VolumeRef, size: int) -> VolumeWriter:
        if size < 0:
            raise ValueError(f"negative volume size {size}")
        volume_id = validate_id("volume id", target.volume_id)
        final = self._path(volume_id)
        return _files.start_write(
            self._root, volume_id, final, size, lambda fd, tmp: _FileWriter(fd, tmp, final, size)
        )

    # -- allocated-extents ------------------------------------------------

    def allocated_extents(self, source: Source) -> Sequence[Extent]:
        fd, size = self._open_source(source)
        try:
            return _data_extents(fd, size)
        except OSError as exc:
            raise BackendError(f"cannot map extents of {source}: {os_error_text(exc)}") from exc
        finally:
            os.close(fd)

    # -- replicate-to-peer ------------------------------------------------

    def accepts_peer(self, peer: BackendSpec) -> bool:
        """A file backend whose directory this host can open."""
        path = peer.options.get("path")
        return peer.driver == "file" and bool(path) and os.path.isdir(str(path))

    def replicate_to(
        self, source: Source, peer: BackendSpec, target: VolumeRef
    ) -> ReplicatedVolume:
        if not self.accepts_peer(peer):
            raise BackendError(f"file driver cannot reach backend {peer.name!r} directly")
        writer_of = FileDriver(peer.options["path"])
        src, size = self._open_source(source)
        try:
            writer = writer_of.open_write(target, size)
            assert isinstance(writer, _FileWriter)
            try:  # an interrupt (or any error) discards the partial copy
                writer.fill_from(src, str(source))
                failpoint("replicate.native-filled")
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            return ReplicatedVolume(size, sum(e.length for e in _data_extents(src, size)))
        finally:
            os.close(src)

    # -- plain helpers for tests and the demo (not capabilities) -----------

    def create_volume(self, volume_id: str, size: int) -> VolumeRef:
        """Create an empty sparse volume of `size` bytes; `BackendError` if it exists."""
        path = self._path(validate_id("volume id", volume_id))
        try:
            fd = os.open(path, _files.CREATE_FLAGS, 0o600)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
        except OSError as exc:
            raise BackendError(f"cannot create volume {volume_id!r}: {os_error_text(exc)}") from exc
        return VolumeRef(volume_id)

    def list_volumes(self) -> list[VolumeRef]:
        """Every volume in the directory, sorted by id."""
        return _files.list_volume_ids(self._root)

    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume (not its snapshots). Deleting a missing one is not an error.

        Its folder of snapshots goes too once empty (``check-driver --backend``
        left one behind for each scratch volume it removed).
        """
        volume_id = validate_id("volume id", volume_id)
        _files.unlink_if_exists(self._path(volume_id))
        with contextlib.suppress(OSError):  # missing, or not empty: kept
            os.rmdir(self._path(".snapshots", volume_id))

    # -- paths ------------------------------------------------------------

    def _path(self, *parts: str, create: bool = False) -> str:
        """``<root>/<parts...>`` (see `_files.safe_path`)."""
        return _files.safe_path(self._root, *parts, create=create)

    def _snapshot_path(self, snapshot: SnapshotRef, create_parent: bool = False) -> str:
        volume_id = validate_id("volume id", snapshot.volume_id)
        snapshot_id = validate_id("snapshot id", snapshot.snapshot_id)
        return self._path(".snapshots", volume_id, snapshot_id, create=create_parent)

    def _open_source(self, source: Source) -> tuple[int, int]:
        """Open a volume or snapshot read-only; return its fd and size."""
        missing: type[NotFound]
        if isinstance(source, SnapshotRef):
            path, missing = self._snapshot_path(source), SnapshotNotFound
        else:
            path, missing = self._path(validate_id("volume id", source.volume_id)), VolumeNotFound
        return _files.open_regular(path, str(source), missing)


class _FileReader:
    """A `VolumeReader`: ``preadv`` straight into the caller's buffer, no copy.

    The open descriptor pins the file, so a volume replaced by a commit
    keeps reading as it was when opened.
    """

    __slots__ = ("_fd", "_size")

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        wanted, done = len(buffer), 0
        try:
            while done < wanted:
                n = os.preadv(self._fd, [buffer[done:] if done else buffer], offset + done)
                if n == 0:  # end of file
                    break
                done += n
        except OSError as exc:
            raise BackendError(
                f"read failed at offset {offset + done}: {os_error_text(exc)}"
            ) from exc
        return done

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class _FileWriter:
    """A `VolumeWriter`: fill a sparse temporary file, rename it on commit.

    Until `commit` the old volume is untouched; `abort` (or a failed commit)
    removes the temporary file. `write_at` is a ``pwrite``: several threads
    may write disjoint ranges at once (``concurrent_writes``).
    """

    __slots__ = ("_fd", "_final", "_replace", "_size", "_tmp")
    concurrent_writes = True

    def __init__(self, fd: int, tmp: str, final: str, size: int) -> None:
        self._fd, self._tmp, self._final, self._size = fd, tmp, final, size
        self._replace = os.path.lexists(final)  # else a new volume: never clobber one

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        try:
            _files.write_all_at(self._fd, offset, data, self._size)
        except BackendError as exc:  # name the volume: "write failed at offset N" did not
            raise BackendError(
                f"cannot write volume {os.path.basename(self._final)!r}: {exc}"
            ) from exc
        # Start writing this range to disk now (keeping it cached), so that the fsync
        # of `commit` waits for the last few writes only, not for the whole volume.
        os.posix_fadvise(self._fd, offset, len(data), os.POSIX_FADV_DONTNEED)

    def fill_from(self, src: int, name: str) -> None:
        """Copy all of `src` (`name` for errors) in: reflink, else data extents only.

        On failure abort (the temporary file goes) and raise: `ShortRead` if
        `src` shrank below the writer's size, `BackendError` for an I/O error.
        """
        try:
            _clone_or_copy(src, self._fd, self._size, name)
        except OSError as exc:
            self.abort()
            raise BackendError(f"cannot copy into {self._final!r}: {os_error_text(exc)}") from exc
        except BaseException:  # Ctrl-C mid-copy: the temporary copy went nowhere
            self.abort()
            raise

    def commit(self) -> None:
        if self._fd < 0:
            raise ValueError("writer already committed or aborted")
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            _files.commit_volume(self._tmp, self._final, self._replace)
            _files.fsync_dir(os.path.dirname(self._final))
        except OSError as exc:
            self.abort()
            raise BackendError(f"cannot commit {self._final!r}: {os_error_text(exc)}") from exc
        except BaseException:  # VolumeExists: another run made the new volume first
            self.abort()
            raise

    def abort(self) -> None:
        fd, self._fd = self._fd, -1
        _files.discard(fd, self._tmp)


def _clone_or_copy(src: int, dst: int, size: int, name: str) -> None:
    """Make `dst` a copy of `src`: reflink if possible, else copy data extents only.

    `name` says what `src` is, for errors. Raise `ShortRead` when `src` holds
    fewer than `size` bytes (it shrank after `size` was taken, or while it was
    copied) rather than leave zeros in `dst` where the data was.
    """
    try:
        fcntl.ioctl(dst, FICLONE, src)
    except OSError as exc:
        if exc.errno not in _NO_REFLINK:
            raise
    else:
        _check_length(src, size, name)
        return
    os.ftruncate(dst, size)  # holes stay holes
    in_kernel = True  # copy_file_range, until it refuses (another file system: EXDEV)
    for extent in _data_extents(src, size):
        offset = extent.offset
        while offset < extent.end:
            n = 0
            if in_kernel:
                try:
                    n = os.copy_file_range(src, dst, extent.end - offset, offset, offset)
                except OSError as exc:
                    if exc.errno not in _NO_REFLINK:
                        raise
                    in_kernel = False
            if not in_kernel:
                n = _copy_range(src, dst, offset, extent.end - offset)
            if n == 0:  # end of file before `size`: the source shrank under us
                raise ShortRead(
                    f"short read of {name} at offset {offset}: the file ends there, before"
                    f" its size {size} when the copy began"
                )
            offset += n
            failpoint("file.piece-copied")
    _check_length(src, size, name)  # shrunk before its extents were listed: holes, not data


def _check_length(src: int, size: int, name: str) -> None:
    """Raise `ShortRead` unless `src` still holds at least `size` bytes."""
    now = os.fstat(src).st_size
    if now < size:
        raise ShortRead(
            f"short read of {name}: the file holds {now} bytes, fewer than its size {size}"
            " when the copy began"
        )


def _copy_range(src: int, dst: int, offset: int, length: int) -> int:
    """Copy up to 1 MiB of `src` at `offset` to `dst` through memory; the bytes copied."""
    data = os.pread(src, min(length, 1 << 20), offset)
    _files.write_all_at(dst, offset, data, offset + len(data))
    return len(data)


def _data_extents(fd: int, size: int) -> list[Extent]:
    """The data ranges of `fd` below `size`, sorted and merged (``SEEK_DATA``/``SEEK_HOLE``)."""
    extents: list[Extent] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after offset
                break
            if exc.errno == errno.EINVAL and offset == 0:  # filesystem cannot tell
                return [Extent(0, size)]
            raise
        if start >= size:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if extents and extents[-1].end == start:
            start = extents.pop().offset
        extents.append(Extent(start, end - start))
        offset = end
    return extents
