"""The reference object store: one file per object under a directory.

`PosixStore` shows a store author the whole `IObjectStore` contract on the
simplest backend:

* key ``a/b/c`` is the file ``<root>/a/b/c`` (keys are checked with
  `validate_key`, so nothing escapes the root);
* `put` is atomic: write a temporary file in the same directory (a
  ``.tmp-<random>`` name, which is never a valid key and never listed),
  fsync it, rename it over the key, fsync the directory;
* `put_if_absent` never overwrites: it hard-links the temporary file to the
  key, so of two concurrent writers exactly one wins;
* `list` walks only the subtree the prefix can match and yields keys in
  plain string order;
* `sizes` (the ``stored-sizes`` extension) is one ``stat`` and one
  ``access`` per key: a file that cannot be read counts as absent, so that
  a backup stores it again;
* a top-level folder of the store (``chunks``, ``manifests``, ``leases``,
  ``locks``...) that is a symbolic link is refused with `BackendError`
  naming it, before anything is read, written, listed or deleted through
  it: garbage collection must never delete files outside the store. (The
  store's root itself may be a link: it is resolved once, when opened.)
* ``deferred-sync`` (`IDeferredSync`): `put_unsynced` writes and renames
  without waiting for the disk (it starts the file's writeback and
  returns: on Linux ``posix_fadvise(DONTNEED)`` writes dirty pages back
  without waiting and keeps them cached), `sync` then makes a whole batch
  durable: one ``fsync`` per file, one per directory, by which time most
  of the data is on disk already;
* `consistent_listings` (read by garbage collection, for its grace period):
  True on a local file system, whose listings see every file renamed into
  place before they start; False on a network file system (NFS, CIFS,
  CephFS...), whose clients may list a directory from a cache.

Opening makes the store's directory if it is missing; with ``create=False``
it makes nothing, and a missing directory (or one that is not a store) is
`StoreMissing` (see `PosixStore`). With ``durable=False`` the fsyncs are
skipped (for tests and scratch stores): a crash may then lose recent
objects, but never exposes a partial one. A key cannot be both an object
and a "directory" of other keys (``a`` and ``a/b``); POSIX does not allow
it, and `put` raises `BackendError`.
"""

from __future__ import annotations

import builtins
import errno
import functools
import os
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from zope.interface import implementer

from pieceworks.drivers import _files
from pieceworks.failpoints import failpoint
from pieceworks.protocols import (
    BackendError,
    ConfigError,
    InvalidName,
    ObjectInfo,
    ObjectNotFound,
    StoredSizes,
    StoreMissing,
    TransientError,
    validate_key,
)
from pieceworks.protocols.deferred_sync import IDeferredSync
from pieceworks.protocols.os_errors import os_reason

__all__ = ["PosixStore"]

_TRANSIENT = {errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE}
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
#: Reading an object: O_NONBLOCK so that a FIFO under a key cannot hang the open.
_GET_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
#: Threads `sync` waits on ``fsync`` with (waiting, not working: more than the cores).
_SYNC_THREADS = 8
#: Keys `sync` holds at once (see `PosixStore.sync`).
_SYNC_BATCH = 1024
#: File system types (``/proc/self/mountinfo``) whose clients may list a directory from a
#: cache that misses files other hosts wrote lately.
_NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "lustre", "gpfs"}
)
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
#: The top-level folders of a store (docs/format.md): a directory holding any is a store.
_STORE_FOLDERS = frozenset({"chunks", "manifests", "leases", "locks", "runs", "quarantine", "keys"})
#: Entries a fresh file system's root holds: they do not make a directory something else.
_NOT_CONTENT = frozenset({"lost+found"})


@implementer(IDeferredSync)
class PosixStore(StoredSizes):
    """An object store in a local (or NFS-mounted) directory.

    Options (keyword arguments; strings from a configuration file are
    accepted for the flags):

    `path`
        The store's directory (a link to one is resolved once, here).
    `durable`
        Whether writes are made durable with ``fsync`` (default true; see the
        module).
    `create`
        Whether a missing directory is created (default true: what a backup
        wants). With false, opening a store that does not exist raises
        `StoreMissing` and creates nothing: the directory is absent (or a
        dangling link), or it is not a pieceworks store (it holds entries,
        none of them one of the store's folders ``chunks``, ``manifests``,
        ``leases``, ``locks``, ``runs``, ``quarantine``, ``keys``; dot files
        and ``lost+found`` do not count). An empty directory is an empty
        store. The commands that only read a store open it this way.

    Raise `ConfigError` for an unknown option, a bad flag, or a path that
    cannot be a store (a file, a directory that cannot be made).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        durable: bool | str = True,
        *,
        create: bool | str = True,
        **unknown: object,
    ) -> None:
        if unknown:
            raise ConfigError(f"posix store: unknown option(s): {', '.join(sorted(unknown))}")
        durable = _flag("durable", durable)
        self._create = _flag("create", create)
        where = os.fspath(path)
        if self._create:
            _make_store(where)
        else:
            _require_store(where)
        self._root = os.path.realpath(path)
        self._durable = durable

    def __repr__(self) -> str:
        return f"PosixStore({self._root!r}, durable={self._durable})"

    @functools.cached_property
    def consistent_listings(self) -> bool:
        """Whether a listing sees every object written (anywhere) before it starts.

        False on a network file system (`_NETWORK_FS`, ``fuse.*`` network
        mounts) or when the file system cannot be told: garbage collection
        then keeps young unreferenced chunks for its grace period.
        """
        kind = _filesystem_type(self._root)
        return kind is not None and kind not in _NETWORK_FS and not kind.startswith("fuse.")

    def put(self, key: str, data: bytes | memoryview) -> None:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.replace(tmp, path)
            self._sync_dir(os.path.dirname(path))
        except OSError as exc:
            _files.unlink_if_exists(tmp)
            raise _error(f"cannot put {path!r}", exc, path) from exc

    def put_unsynced(self, key: str, data: bytes | memoryview) -> None:
        """`put` without waiting for the disk: durable only after `sync` (see the module)."""
        path = self._path(key)
        tmp = self._write_temp(path, data, wait=False)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            _files.unlink_if_exists(tmp)
            raise _error(f"cannot put {path!r}", exc, path) from exc

    def sync(self, keys: Iterable[str]) -> None:
        """``fsync`` each existing file of `keys`, then their directories up to the root.

        The ``fsync`` calls run on a few threads at once, so that the file
        system commits them together (ext4, XFS: one journal commit for
        many waiting callers) instead of one after another. `keys` is read
        `_SYNC_BATCH` at a time (each batch sorted, duplicates skipped), so
        that the memory a sync takes does not grow with the number of keys:
        a backup of 1 TiB in 4 MiB chunks syncs 262,144 of them. Only the
        set of directories grows, with the directories written in.
        """
        if not self._durable:
            return
        directories: set[str] = set()
        with ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="pieceworks-sync") as pool:
            for batch in _batches(keys, _SYNC_BATCH):
                paths = sorted({self._path(key) for key in batch})
                found = pool.map(_fsync_existing, paths)
                for path, ok in zip(paths, found, strict=True):
                    if not ok:
                        continue
                    # every directory a put_unsynced may have created or renamed in
                    directory = os.path.dirname(path)
                    while directory not in directories:
                        directories.add(directory)
                        if directory == self._root:
                            break
                        directory = os.path.dirname(directory)
            list(pool.map(_fsync_dir, sorted(directories)))

    def get(self, key: str) -> bytes:
        """The object's bytes; only a regular file is an object, as for `head` and `list`.

        Opened without blocking, so a FIFO (or a device) found under a key is
        `ObjectNotFound` at once: a restore or verify that opened it waited
        for a writer forever, beyond the reach of Ctrl-C and SIGTERM.
        """
        path = self._path(key)
        try:
            fd = os.open(path, _GET_FLAGS)
        except _MISSING:
            raise ObjectNotFound(f"no object {key!r}") from None
        except OSError as exc:
            raise _error(f"cannot get {path!r}", exc, path) from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ObjectNotFound(f"no object {key!r} (not a regular file)")
            with open(fd, "rb", buffering=0, closefd=False) as f:
                return f.read()
        except OSError as exc:
            raise _error(f"cannot get {path!r}", exc, path) from exc
        finally:
            os.close(fd)

    def head(self, key: str) -> ObjectInfo:
        st = self._stat(key)
        if st is None:
            raise ObjectNotFound(f"no object {key!r}")
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except _MISSING:
            pass
        except OSError as exc:
            path = os.path.join(self._root, key)
            raise _error(f"cannot delete {path!r}", exc, path) from exc

    def list(self, prefix: str) -> Iterator[str]:
        directory, _, start = prefix.rpartition("/")
        if directory:
            try:
                validate_key(directory)
            except InvalidName:
                return iter(())  # no key can start with it
            self._refuse_link(directory)
        return _walk(os.path.join(self._root, directory), directory, start)

    def exists(self, key: str) -> bool:
        """One ``stat``, no read."""
        return self._stat(key) is not None

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """Write `key` unless it exists; safe against concurrent writers.

        ``link(2)`` fails if the key exists, so a concurrent writer's object
        is never replaced (for content-addressed keys it holds the same bytes).
        """
        if self.exists(key):
            return False
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)
            self._sync_dir(os.path.dirname(path))
        except FileExistsError:
            return False
        except OSError as exc:
            raise _error(f"cannot put {path!r}", exc, path) from exc
        finally:
            _files.unlink_if_exists(tmp)
        return True

    def sweep_temporary(self, *, dry_run: bool = False) -> builtins.list[tuple[str, bool, str]]:
        """Remove ``.tmp-*`` files whose writer died, anywhere under the store's root.

        Temporary names carry the writing process (host, pid, start time):
        one of a dead process on this host is left behind at once, one of
        another host after an hour untouched. Returns ``(path, left_behind,
        reason)`` for each; left-behind ones are removed unless `dry_run`.
        """
        paths: builtins.list[str] = []
        for directory, _dirs, files in os.walk(self._root):
            paths += [os.path.join(directory, f) for f in files if f.startswith(".tmp-")]
        return _files.sweep_temporary(paths, dry_run=dry_run)

    def sizes(self, keys: Iterable[str]) -> dict[str, int]:
        """One ``stat`` and one ``access`` per key; unreadable files count as absent."""
        found: dict[str, int] = {}
        for key in keys:
            st = self._stat(key)
            if st is not None and os.access(self._path(key), os.R_OK):
                found[key] = st.st_size
        return found

    def _path(self, key: str) -> str:
        self._refuse_link(validate_key(key))
        return os.path.join(self._root, key)

    def _refuse_link(self, key: str) -> None:
        """`BackendError` if the top-level folder `key` lies in is a symbolic link."""
        top = os.path.join(self._root, key.partition("/")[0])
        try:
            is_link = stat.S_ISLNK(os.lstat(top).st_mode)
        except _MISSING:
            return
        except OSError as exc:
            raise _error(f"cannot check {top!r}", exc, top) from exc
        if is_link:
            raise BackendError(
                f"posix store: {top} is a symbolic link (to {os.readlink(top)!r}); the store"
                " never follows links for its own folders: replace it by a real directory"
            )

    def _stat(self, key: str) -> os.stat_result | None:
        try:
            st = os.stat(self._path(key))
        except _MISSING:
            return None
        except OSError as exc:
            path = os.path.join(self._root, key)
            raise _error(f"cannot stat {path!r}", exc, path) from exc
        return st if stat.S_ISREG(st.st_mode) else None

    def _write_temp(self, path: str, data: bytes | memoryview, *, wait: bool = True) -> str:
        """Write `data` to a new temporary file next to `path` and return its name.

        Durable (``fsync``) if the store is and `wait`; without `wait` the
        writeback is only started (`sync` waits for it).
        """
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, f".tmp-{_files.owned_tag()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o644)
            except FileNotFoundError:  # first object under this directory
                self._make_dirs(directory, wait=wait)
                fd = os.open(tmp, flags, 0o644)
        except OSError as exc:
            raise _error(f"cannot write {path!r}", exc, path) from exc
        try:
            try:
                view = memoryview(data).cast("B")
                while view:
                    view = view[os.write(fd, view) :]
                failpoint("store.tmp-written")
                if self._durable and wait:
                    os.fsync(fd)
                elif self._durable:  # start the writeback, `sync` waits for it
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        except BaseException as exc:
            _files.unlink_if_exists(tmp)
            if isinstance(exc, OSError):
                raise _error(f"cannot write {path!r}", exc, path) from exc
            raise
        return tmp

    def _make_dirs(self, directory: str, *, wait: bool = True) -> None:
        if not self._create and not os.path.isdir(self._root):  # never made again by a write
            raise BackendError(
                f"posix store: the store's directory {self._root} does not exist (deleted"
                " while in use?); it was opened without creating it"
            )
        os.makedirs(directory, exist_ok=True)
        while self._durable and wait and directory != self._root:  # persist each new entry
            directory = os.path.dirname(directory)
            self._sync_dir(directory)

    def _sync_dir(self, directory: str) -> None:
        if self._durable:
            _files.fsync_dir(directory)


def _flag(name: str, value: bool | str) -> bool:
    """A boolean option, from a configuration file's string too; `ConfigError` if neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOLS:
        return _BOOLS[value.lower()]
    raise ConfigError(f"posix store: {name} must be true or false, not {value!r}")


def _make_store(where: str) -> None:
    """Make the directory `where` (and its parents) unless it exists; `ConfigError` if it cannot."""
    try:
        os.makedirs(where, exist_ok=True)
    except OSError as exc:
        why = (  # makedirs says "File exists" for a file where the directory should be
            "it is a file, not a directory"
            if isinstance(exc, FileExistsError) and not os.path.isdir(where)
            else os_reason(exc, where)
        )
        raise ConfigError(f"posix store: cannot use {where!r}: {why}") from exc


def _require_store(where: str) -> None:
    """`StoreMissing` unless `where` is a directory that is empty or a pieceworks store.

    Reads only (one ``stat``, one ``listdir``): opening without creating
    leaves no trace. A directory that cannot be listed is left to the
    operations that read it (they say why); a file is the `ConfigError` a
    store that creates says too.
    """
    label = f"posix store {where!r}"
    try:
        st = os.stat(where)
    except FileNotFoundError:  # (a file on the way, NotADirectoryError, cannot be a store)
        raise StoreMissing(
            f"{label} does not exist (no directory {where}); nothing was created: check the"
            " path, or run a backup to create the store",
            label,
        ) from None
    except OSError as exc:
        raise ConfigError(f"posix store: cannot use {where!r}: {os_reason(exc, where)}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"posix store: cannot use {where!r}: it is a file, not a directory")
    try:
        names = os.listdir(where)
    except OSError:
        return
    others = sorted(n for n in names if not n.startswith(".") and n not in _NOT_CONTENT)
    if others and not _STORE_FOLDERS.intersection(others):
        shown = ", ".join(repr(n) for n in others[:3]) + (", ..." if len(others) > 3 else "")
        raise StoreMissing(
            f"{label} is not a pieceworks store: the directory holds {len(others)} other"
            f" entr{'y' if len(others) == 1 else 'ies'} ({shown}) and none of the store's"
            f" folders ({', '.join(sorted(_STORE_FOLDERS))}); nothing was created: check the"
            " path, or run a backup to create a store there",
            label,
        )


def _batches(keys: Iterable[str], size: int) -> Iterator[list[str]]:
    """`keys` in lists of at most `size`, in order."""
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fsync_existing(path: str) -> bool:
    """``fsync`` the file `path`; False if it does not exist."""
    try:
        _files.fsync_file(path)
    except _MISSING:
        return False
    except OSError as exc:
        raise _error(f"cannot sync {path!r}", exc, path) from exc
    return True


def _fsync_dir(path: str) -> None:
    try:
        _files.fsync_dir(path)
    except OSError as exc:
        raise _error(f"cannot sync {path!r}", exc, path) from exc


def _walk(directory: str, key_dir: str, start: str) -> Iterator[str]:
    """Yield the keys under `directory` whose last part at this level begins with `start`.

    Each level is sorted with ``/`` appended to directory names, which makes
    a depth-first walk yield keys in plain string order (``a-b`` < ``a/b``).

    A missing `directory` holds no key. One that is a file (``manifests``
    replaced by a file) is a `BackendError`, never an empty listing: every
    prefix pieceworks lists is one of the store's own folders, and an empty
    ``manifests/`` would let garbage collection remove every chunk.
    """
    try:
        with os.scandir(directory) as entries:
            found = sorted(
                (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e)
                for e in entries
                if e.name.startswith(start) and _is_part(e.name)
            )
    except FileNotFoundError:
        return
    except NotADirectoryError as exc:
        raise BackendError(
            f"posix store: cannot list {directory}: not a directory (a file is where one of"
            " the store's folders should be: its layout is damaged; move that file away)"
        ) from exc
    except OSError as exc:  # unreadable: say which directory, not a bare PermissionError
        raise _error(f"cannot list {directory!r}", exc, directory) from exc
    base = key_dir + "/" if key_dir else ""
    for name, entry in found:
        if name.endswith("/"):
            yield from _walk(entry.path, base + entry.name, "")
        elif entry.is_file():  # a link to a file too: `get` and `head` read it (folders: never)
            yield base + name


def _is_part(name: str) -> bool:
    """Whether `name` can be one part of a key (temporary files cannot)."""
    try:
        validate_key(name)
    except InvalidName:
        return False
    return True


def _error(message: str, exc: OSError, path: str) -> BackendError:
    """`message` (the action and what it was on) and why, in words (`os_reason` on `path`).

    A transient errno (``EAGAIN``, ``ESTALE``...) gives a `TransientError`.
    """
    kind = TransientError if exc.errno in _TRANSIENT else BackendError
    return kind(f"{message}: {os_reason(exc, path)}")


def _filesystem_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type (``ext4``, ``nfs4``) of the file system holding `path`; None if unknown.

    The mount point in `mountinfo` (Linux's ``/proc/self/mountinfo``) that
    is the longest prefix of `path` (already resolved: `PosixStore` keeps a
    realpath).
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return None
    best, kind = "", None
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        point = parts[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, rest.split()[0]
    return kind
