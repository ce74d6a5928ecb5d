"""``pieceworks restore BACKUP_ID --to-file PATH``: restore into a local file or block device.

No backend is involved: the chunks are fetched and checked by restore's own
data path (`chunk_pipeline.restore_chunks`, every chunk's sha256 checked
before it is written) and written here, under a read lease on the store
(`gc.read_lease`) taken before the manifest is read: deleting the backup
meanwhile defers its chunks' collection instead of failing the restore.

* A regular file is written as a sparse temporary file next to PATH
  (holes are never written), flushed to disk, then renamed onto PATH: PATH
  appears whole or not at all, and a failure leaves nothing behind.
* A block device is written in place (a device cannot be renamed): holes
  are written as zeros, since the device holds old data there; the device
  must be at least the backup's size and writable (a read-only device,
  ``losetup -r`` or ``blockdev --setro``, is refused before anything is
  read: the kernel lets it be opened for writing and fails each write). A
  failure midway leaves the device partly written, and the message says so;
  one before the first byte says the device was not changed.
* An existing PATH (file or device) is refused unless ``--overwrite``.
  Anything else (a directory, a character device, a missing parent
  directory, a file that cannot be created there) is refused. Without
  ``--overwrite`` the temporary file is linked to PATH, which fails if PATH
  appeared meanwhile (another restore to the same new file): the second to
  finish exits 2 and the first's file stays, never replaced by surprise.
* A symbolic link is followed, as ``cp`` follows one: ``--overwrite``
  replaces the content of the file (or device) it names and the link stays.
  A link to nothing (dangling) is refused: it is not a new file, and what
  it should become is not ours to guess.

``restore`` without ``--to-file`` is the backend restore
(`pieceworks.cli.commands.restore`); `run_restore_command` chooses.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import stat
import time
from typing import TYPE_CHECKING, Any

from pieceworks.cli import startup
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.ids import id_type
from pieceworks.common_algorithms.gc.journal import TEMP_FILE_MARK, LocalJournal
from pieceworks.protocols import BackendError
from pieceworks.protocols.os_errors import os_reason
from pieceworks.protocols.owner import new_token

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms.backend import Store

__all__ = ["DeviceWriter", "FileWriter", "add_arguments", "open_target", "run_restore_command"]

_ZERO_BLOCK = 1 << 20

log = logging.getLogger(__name__)


def _write_failed(path: str, exc: OSError) -> BackendError:
    """A write to PATH that failed (a full disk, an I/O error): the error naming PATH."""
    return BackendError(f"cannot write {path}: {os_reason(exc, path)}")


def _kept_mode(path: str) -> tuple[int, int, int] | None:
    """The mode, owner and group of the regular file `path`, if it is one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) if stat.S_ISREG(st.st_mode) else None


class FileWriter:
    """A `VolumeWriter` into a sparse temporary file, renamed onto `path` on commit.

    Unless `replace`, the commit links the temporary to `path` instead, so a
    `path` made meanwhile by someone else is never replaced: `CliError`
    (exit 2) naming it, and nothing is left behind. A file it replaces
    (``--overwrite``) keeps its permission bits (and its owner and group
    where this process may set them): a 0600 image stays 0600. A new file
    is ``0644`` less the umask. A write or commit that fails (a full disk)
    is a `BackendError` naming `path`.
    """

    def __init__(
        self,
        path: str,
        size: int,
        journal: LocalJournal | None = None,
        *,
        replace: bool = True,
    ) -> None:
        self.path, self.replace = path, replace
        self.kept = _kept_mode(path)
        directory, name = os.path.split(os.path.abspath(path))
        self.tmp = os.path.join(directory, _temporary_name(directory, name))
        # Named in the journal first: `pieceworks recover` removes it if this run is killed.
        self.journal, self.token, self.entry = journal, new_token(), {"file": self.tmp}
        if journal is not None:
            try:
                journal.record(self.token, "restore-to-file", self.entry)
            except OSError as exc:  # $PIECEWORKS_HOME, not PATH's directory: say so
                where = str(journal.directory)
                raise BackendError(
                    f"cannot write the run journal in {where}: {os_reason(exc, where)}; it"
                    " names the temporary file of a restore to a file, so that `pieceworks"
                    " recover` removes it if the run is killed"
                ) from exc
        self.fd: int | None = None
        try:
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except BaseException:
            self._forget()  # nothing was created
            raise
        try:
            os.ftruncate(self.fd, size)
        except BaseException:
            self.abort()
            raise

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        assert self.fd is not None
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self.fd, view, offset)
                view, offset = view[n:], offset + n
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc

    def commit(self) -> None:
        assert self.fd is not None
        try:
            os.fsync(self.fd)
            if self.kept is None:
                os.fchmod(self.fd, 0o644 & ~_umask())
            else:
                mode, uid, gid = self.kept
                with contextlib.suppress(PermissionError):
                    os.fchown(self.fd, uid, gid)  # first: a chown clears set-id bits
                os.fchmod(self.fd, mode)
            os.close(self.fd)
            self.fd = None
            if self.replace:
                os.replace(self.tmp, self.path)
            else:
                self._link()
            dir_fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc
        self._forget()

    def _link(self) -> None:
        """Give the temporary the name `path` unless `path` exists (then `CliError`)."""
        try:
            os.link(self.tmp, self.path, follow_symlinks=False)
        except FileExistsError:
            self.abort()
            raise CliError(
                f"{self.path} was created by someone else while this restore ran; it was not"
                " replaced (add --overwrite to replace it)",
                ExitCode.USAGE,
            ) from None
        except OSError:  # a file system without hard links: check, then rename
            if os.path.lexists(self.path):
                self.abort()
                raise CliError(
                    f"{self.path} was created by someone else while this restore ran; it was"
                    " not replaced (add --overwrite to replace it)",
                    ExitCode.USAGE,
                ) from None
            os.replace(self.tmp, self.path)
            return
        os.unlink(self.tmp)

    def _forget(self) -> None:
        """Drop the temporary from the journal; a journal that cannot be rewritten stays.

        It names a file that is gone, which `pieceworks recover` cleans up:
        no reason to fail a restore that is done (or to hide why it failed).
        """
        if self.journal is None:
            return
        try:
            self.journal.forget(self.token, self.entry)
        except OSError as exc:
            log.warning(
                "cannot update the run journal in %s (%s); `pieceworks recover` removes it",
                self.journal.directory,
                exc.strerror,
            )

    def abort(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        self._forget()


class DeviceWriter:
    """A `VolumeWriter` into a block device, in place; holes are written as zeros.

    `zeros_written`: the bytes of zeros written for holes (bytes).
    """

    def __init__(self, path: str, size: int) -> None:
        self.path, self.size = path, size
        try:
            self.fd: int | None = os.open(path, os.O_WRONLY)
        except OSError as exc:  # not ours to write (EACCES), gone meanwhile...
            raise CliError(f"cannot restore to {path}: {exc.strerror}", ExitCode.USAGE) from None
        if _read_only(self.fd):
            os.close(self.fd)
            self.fd = None
            raise CliError(
                f"cannot restore to {path}: the block device is read-only", ExitCode.USAGE
            )
        self.end = 0  # everything before it is written (data or zeros)
        self.zeros_written = 0
        self.changed = False  # whether any byte was written

    def _zero(self, until: int) -> None:
        assert self.fd is not None
        zeros = bytes(min(_ZERO_BLOCK, max(0, until - self.end)))
        while self.end < until:
            n = min(len(zeros), until - self.end)
            self._write(self.end, memoryview(zeros)[:n])
            self.end += n
            self.zeros_written += n

    def _write(self, offset: int, view: memoryview) -> None:
        assert self.fd is not None
        try:
            while view:
                n = os.pwrite(self.fd, view, offset)
                view, offset = view[n:], offset + n
                self.changed = self.changed or n > 0
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        self._zero(offset)
        self._write(offset, memoryview(data))
        self.end = max(self.end, offset + len(data))

    def commit(self) -> None:
        self._zero(self.size)
        assert self.fd is not None
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc
        os.close(self.fd)
        self.fd = None

    def abort(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


#: ioctl BLKROGET (linux/fs.h, _IO(0x12, 94)): whether a block device is read-only.
_BLKROGET = 0x125E


def _read_only(fd: int) -> bool:
    """Whether the block device open as `fd` is read-only (False if that cannot be told)."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only, and only for a device
        import struct  # noqa: PLC0415

        flag = fcntl.ioctl(fd, _BLKROGET, struct.pack("i", 0))
        return bool(struct.unpack("i", flag)[0])
    except (ImportError, OSError):  # not Linux, or an ioctl the device does not take
        return False


def _temporary_name(directory: str, name: str) -> str:
    """``.<name>.pw-restore-<12 hex>``, `name` shortened so that it fits the file system.

    A PATH whose name is valid but close to the limit (255 bytes on most
    file systems) must not fail on its temporary's longer name.
    """
    suffix = f"{TEMP_FILE_MARK}{secrets.token_hex(6)}"
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    room = max(0, limit - 1 - len(os.fsencode(suffix)))
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}{suffix}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _device_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def open_target(
    path: str, size: int, *, overwrite: bool, journal: LocalJournal | None = None
) -> FileWriter | DeviceWriter:
    """The writer for PATH (see the module docstring); `CliError` naming what is wrong.

    A regular file's temporary is named in `journal` while it exists. A
    symbolic link is followed (the writer writes what it names).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # a name too long, a component that is a file, a loop...
        raise CliError(f"cannot restore to {path}: {exc.strerror}", ExitCode.USAGE) from None
    if st is None:
        if os.path.islink(path):
            raise CliError(
                f"cannot restore to {path}: it is a symbolic link to {os.readlink(path)!r},"
                " which does not exist; name the file itself",
                ExitCode.USAGE,
            )
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise CliError(
                f"cannot restore to {path}: directory {parent} does not exist", ExitCode.USAGE
            )
        return _file_writer(path, size, journal, replace=False)
    path = os.path.realpath(path)  # a link: write the file it names, keep the link
    if stat.S_ISDIR(st.st_mode):
        raise CliError(f"cannot restore to {path}: it is a directory", ExitCode.USAGE)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise CliError(
            f"cannot restore to {path}: not a regular file or a block device", ExitCode.USAGE
        )
    if not overwrite:
        kind = "block device" if stat.S_ISBLK(st.st_mode) else "file"
        raise CliError(
            f"{path} exists ({kind}): add --overwrite to replace its content", ExitCode.USAGE
        )
    if stat.S_ISREG(st.st_mode):
        return _file_writer(path, size, journal)
    capacity = _device_size(path)
    if capacity < size:
        raise CliError(
            f"block device {path} holds {capacity} bytes; the backup needs {size}", ExitCode.USAGE
        )
    return DeviceWriter(path, size)


def _file_writer(
    path: str, size: int, journal: LocalJournal | None, *, replace: bool = True
) -> FileWriter:
    """`FileWriter`; its temporary file that cannot be made (a directory not
    writable, a read-only file system, a size the file system cannot hold) is
    a usage error naming PATH, and nothing is left behind."""
    try:
        return FileWriter(path, size, journal, replace=replace)
    except OSError as exc:
        directory = os.path.dirname(os.path.abspath(path))
        raise CliError(
            f"cannot restore to {path}: cannot create a file of {size} bytes in {directory}:"
            f" {exc.strerror}",
            ExitCode.USAGE,
        ) from None


DESCRIPTION = """\
Restore BACKUP_ID into a new volume of the backend: --volume ID, or by default
<volume>-from-<BACKUP_ID> (its name is printed). A volume that exists, the
backup's own included, is replaced only with --overwrite (else exit 2), and
then the report gives its old and new size. Every chunk is checked against
its sha256 before it is written; the volume is written only when the whole
restore succeeded.

--to-file PATH restores into a local file instead (sparse: holes are not
written; it appears whole or not at all) or into a block device (written in
place, holes as zeros). An existing PATH is refused unless --overwrite."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT, ExitCode.INTERRUPTED)


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``restore`` (into a volume or, with --to-file, a file)."""
    parser.describe(DESCRIPTION, CODES, runs_flow=True)
    parser.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    parser.add_argument(
        "--volume",
        metavar="ID",
        type=id_type("volume id"),
        help="target volume (default: a new one, <volume>-from-<BACKUP_ID>)",
    )
    parser.add_argument(
        "--to-file",
        metavar="PATH",
        type=_target_path,
        help="restore into this local file or block device instead of a backend volume",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the target volume (or --to-file PATH) if it exists; the report says"
        " the old and new size",
    )


def _target_path(text: str) -> str:
    """``--to-file``'s PATH; empty, blank, ending in ``/`` or ``-`` is a usage error.

    Such a path names no file: the restore ran to the end, then failed
    renaming its temporary file to it (an unexpected error, exit 1).
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("path must not be empty or blank")
    if text.endswith(os.sep):
        raise argparse.ArgumentTypeError(f"{text!r} names a directory, not a file")
    if text == "-":  # the usual name of standard output: it made a file called '-'
        raise argparse.ArgumentTypeError(
            "'-' (standard output) is not a target: restore writes a file or a block device;"
            " name one (./- for a file called '-')"
        )
    return text


def run_restore_command(args: argparse.Namespace, ctx: Context) -> int:
    """``restore``: into a file or device with --to-file, else into a backend volume."""
    if args.to_file is None:  # --overwrite: replace an existing volume (restore.py)
        from pieceworks.cli.commands.restore import run_restore  # noqa: PLC0415

        return run_restore(args, ctx)
    if args.volume is not None:
        raise CliError("--to-file and --volume exclude each other", ExitCode.USAGE)
    startup.done()  # no flow, no engine: the restore's start-up is over
    return run_restore_to_file(args, ctx)


def run_restore_to_file(args: argparse.Namespace, ctx: Context) -> int:
    """Restore BACKUP_ID into the file or block device ``--to-file``, under a read lease."""
    from pieceworks.common_algorithms.gc.leases import read_lease  # noqa: PLC0415

    started = time.monotonic()
    store = ctx.store()
    # A read lease from before the manifest is read until the last chunk is: a
    # concurrent delete's collection defers instead of taking chunks (see gc).
    with read_lease(store.objects, "restore", [args.backup_id]):
        return _restore_to_file(args, ctx, store, started)


def _restore_to_file(args: argparse.Namespace, ctx: Context, store: Store, started: float) -> int:
    """`run_restore_to_file` inside its read lease."""
    from pieceworks.cli.output import human_bytes, mb_per_s  # noqa: PLC0415
    from pieceworks.common_algorithms import ProgressEvent  # noqa: PLC0415
    from pieceworks.common_algorithms.format.chunk_pipeline import restore_chunks  # noqa: PLC0415
    from pieceworks.common_algorithms.format.manifest import read_manifest  # noqa: PLC0415
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415

    manifest = read_manifest(store.objects, args.backup_id)
    path = args.to_file
    journal = LocalJournal(ctx.config.home / "journal")
    writer = open_target(path, manifest.size, overwrite=args.overwrite, journal=journal)
    device = isinstance(writer, DeviceWriter)
    with ctx.progress(f"restore {os.path.basename(path) or path}") as progress:

        def report(done: int, total: int) -> None:
            progress(ProgressEvent("restore", done / total if total else 1.0, done, total))

        try:
            restored = restore_chunks(store.objects, manifest, writer, progress=report)
            writer.commit()
        except BaseException as exc:
            writer.abort()
            progress.close()
            if isinstance(writer, DeviceWriter):
                left = (
                    f"block device {path} is partly written"
                    if writer.changed
                    else f"block device {path} was not changed"
                )
            else:
                left = f"{path} was not created or changed"
            if isinstance(exc, KeyboardInterrupt):
                raise CliError(f"interrupted: {left}", ExitCode.INTERRUPTED) from None
            ctx.out.warn(f"the restore failed: {left}")
            raise
    seconds = time.monotonic() - started
    doc: dict[str, Any] = {
        "backup_id": manifest.backup_id,
        "volume_id": manifest.volume_id,
        "store": store.name,
        "path": os.path.abspath(path),
        "target_kind": "block-device" if device else "file",
        "size": manifest.size,
        # A device's holes are written too (as zeros): they count as written.
        "bytes_written": restored.bytes_written
        + (writer.zeros_written if isinstance(writer, DeviceWriter) else 0),
        "bytes_fetched": restored.bytes_fetched,
        "chunks_restored": restored.chunks_restored,
        "sparse": not device,
        "seconds": round(seconds, 3),
    }
    ctx.out.data(with_deprecated("restore", doc))  # "target": the old name of target_kind
    holes = (
        "holes left sparse"
        if not isinstance(writer, DeviceWriter)
        else f"{human_bytes(restored.bytes_written)} of data, holes written as zeros"
    )
    ctx.out.result(
        "\n".join(
            [
                f"restored backup {manifest.backup_id} (volume '{manifest.volume_id}') into"
                f" {'block device' if device else 'file'} {path}",
                f"  size      {human_bytes(manifest.size)}",
                f"  written   {human_bytes(doc['bytes_written'])} ({holes})",
                f"  time      {seconds:.2f} s, {mb_per_s(manifest.size, seconds):.1f} MB/s",
            ]
        )
    )
    return ExitCode.OK
