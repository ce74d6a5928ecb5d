"""File handling that the drivers keeping volumes or objects in a directory share.

The file and qcow2 drivers keep their volumes as files under one directory
(``<root>``) and build every new volume under ``<root>/.incoming`` before
moving it in place; the POSIX store writes its objects with the same care
(temporary file, fsync, rename or link, fsync of the directory) and uses
the fsync and clean-up helpers. What they share:

* `volume_root` checks a driver's options and its directory;
* `safe_path` joins names under the root, refusing a parent directory that
  a symbolic link leads elsewhere, and `open_regular` opens a volume without
  following a symbolic link and only if it is a regular file;
* `start_write` opens the temporary file a stream-in writer fills, and
  `write_all_at` / `discard` are that writer's write and abort;
* `fsync_dir`, `fsync_file` and `unlink_if_exists` make changes durable and
  clean up;
* `list_volume_ids` lists the volumes of a directory;
* `owned_tag` names a temporary file after the process writing it, and
  `sweep_temporary` removes those whose writer died (see `Owner`).

Private to the drivers package: it imports only `pieceworks.protocols` and
the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol, TypeVar

from pieceworks.protocols import (
    BackendError,
    ConfigError,
    InvalidName,
    NotFound,
    VolumeExists,
    VolumeRef,
    validate_id,
)
from pieceworks.protocols.os_errors import os_error_text
from pieceworks.protocols.owner import Liveness, Owner

__all__ = [
    "CREATE_FLAGS",
    "commit_volume",
    "discard",
    "fsync_dir",
    "fsync_file",
    "keep_attributes",
    "list_volume_ids",
    "open_regular",
    "safe_path",
    "start_write",
    "unlink_if_exists",
    "volume_root",
    "write_all_at",
]

# Opening a volume to read it. O_NONBLOCK: opening a FIFO planted at a volume's path
# must not hang (no effect on files).
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: Creating a new file that must not exist yet, never through a symbolic link.
CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _Abortable(Protocol):
    def abort(self) -> None: ...


W = TypeVar("W", bound=_Abortable)


def volume_root(owner: str, path: str | os.PathLike[str], unknown: Mapping[str, object]) -> str:
    """The resolved volume directory `path`, after refusing `unknown` options.

    `owner` (``"file driver"``) starts the messages of the `ConfigError`s;
    the directory must exist already.
    """
    if unknown:
        raise ConfigError(f"{owner}: unknown option(s): {', '.join(sorted(unknown))}")
    root = os.path.realpath(path)
    if not os.path.isdir(root):
        raise ConfigError(f"{owner}: {os.fspath(path)!r} is not a directory")
    return root


def safe_path(root: str, *parts: str, create: bool = False) -> str:
    """``<root>/<parts...>``, refusing a parent directory that resolves elsewhere.

    `root` must be resolved already (``os.path.realpath``). With `create`
    the parent directories are made (mode 0700). The last component is
    checked by opening it with ``O_NOFOLLOW``.
    """
    parent = os.path.join(root, *parts[:-1])
    if os.path.realpath(parent) != parent:
        raise InvalidName(f"{parent!r} leads outside {root!r}; refusing it")
    if create:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    return os.path.join(parent, parts[-1])


def open_regular(
    path: str, label: str, missing: type[NotFound], link_note: str = "; refusing it"
) -> tuple[int, int]:
    """Open `path` read-only without following a symbolic link; return its fd and size.

    `label` (``"volume 'v'"``) names the file in messages: `missing` is
    raised if it does not exist or is not a regular file, `InvalidName` (its
    message ending in `link_note`) if it is a symbolic link, and
    `BackendError` if it cannot be opened.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        raise missing(f"no {label}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidName(f"{label} is a symbolic link{link_note}") from None
        raise BackendError(f"cannot open {label}: {os_error_text(exc)}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise missing(f"no {label} (not a regular file)")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def start_write(
    root: str,
    volume_id: str,
    final: str,
    size: int,
    make_writer: Callable[[int, str], W],
    suffix: str = "",
) -> W:
    """Begin writing volume `volume_id` of `size` bytes, to be moved to `final` on commit.

    Refuses a `final` that is a symbolic link, creates a new temporary file
    ``<root>/.incoming/<volume_id>.<random><suffix>`` as a sparse file of
    `size` bytes, and returns ``make_writer(fd, base)``, `base` being the
    temporary name without `suffix`. If the file cannot be sized, the
    writer is aborted. Failures are `BackendError`.
    """
    if os.path.islink(final):
        raise InvalidName(f"volume {volume_id!r} is a symbolic link; refusing it")
    try:
        base = safe_path(root, ".incoming", f"{volume_id}.{owned_tag()}", create=True)
        fd = os.open(base + suffix, CREATE_FLAGS, 0o600)
    except OSError as exc:
        raise BackendError(f"cannot write volume {volume_id!r}: {os_error_text(exc)}") from exc
    writer = make_writer(fd, base)
    try:
        os.ftruncate(fd, size)  # sparse: unwritten ranges read as zeros and cost nothing
    except OSError as exc:
        writer.abort()
        raise BackendError(f"cannot write volume {volume_id!r}: {os_error_text(exc)}") from exc
    return writer


def commit_volume(tmp: str, final: str, replace: bool) -> None:
    """Move the finished temporary file `tmp` to `final` (a volume's file).

    With `replace` (the volume existed when its writer was opened: the
    caller meant to replace it) the move replaces `final`. Without it the
    volume was new, and one that appeared since (another restore or
    replication into the same new name) is never clobbered: `VolumeExists`,
    `tmp` left for the caller to discard. Two runs creating one volume used
    to both succeed, the second silently replacing the first's volume. A
    replaced volume keeps its permission bits (and, where this process may
    give them, its owner and group): see `keep_attributes`.
    """
    if replace:
        keep_attributes(final, tmp)
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # unlike rename, fails if `final` exists
    except FileExistsError:
        raise VolumeExists(
            f"volume {os.path.basename(final)!r} was created by another run while this one"
            " wrote it; it was not replaced: name another volume, or replace it on purpose"
        ) from None
    os.unlink(tmp)


def keep_attributes(old: str, new: str) -> None:
    """Give the file `new` the permission bits, owner and group of the file `old`.

    The temporary file a volume is written into is created 0600; a volume it
    replaces (a restore with --overwrite) would otherwise lose its mode, and
    a disk image shared with a hypervisor's group (0640, 0660) would no
    longer open. Owner and group are kept where this process may set them
    (root, or a group it belongs to); else they stay this process's. A
    missing `old` (removed meanwhile) or one that is not a regular file
    leaves `new` as it is.
    """
    try:
        st = os.stat(old, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    with contextlib.suppress(PermissionError):
        os.chown(new, st.st_uid, st.st_gid)  # first: a chown clears set-id bits
    os.chmod(new, stat.S_IMODE(st.st_mode))


def write_all_at(fd: int, offset: int, data: bytes | memoryview, size: int) -> None:
    """Write all of `data` at `offset` of `fd`, never beyond `size` bytes (`ValueError`)."""
    view = memoryview(data).cast("B")
    if offset < 0 or offset + view.nbytes > size:
        raise ValueError(f"write of {view.nbytes} bytes at {offset} beyond size {size}")
    try:
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    except OSError as exc:
        raise BackendError(f"write failed at offset {offset}: {os_error_text(exc)}") from exc


def discard(fd: int, *paths: str) -> None:
    """Close `fd` unless it is negative (closed already) and remove `paths` that exist."""
    if fd >= 0:
        os.close(fd)
    for path in paths:
        unlink_if_exists(path)


def fsync_dir(path: str) -> None:
    """Make the entries of directory `path` durable (a new, renamed or removed name)."""
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def fsync_file(path: str) -> None:
    """Make the content of the file `path` (not a symbolic link) durable."""
    _fsync(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_if_exists(path: str) -> None:
    """Remove the file `path`; one that is not there is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def list_volume_ids(root: str, suffix: str = "") -> list[VolumeRef]:
    """The volumes in `root`, sorted: regular files named ``<volume-id><suffix>``.

    Symbolic links, other files and names that are no valid id are skipped.
    """
    with os.scandir(root) as entries:
        names = [
            e.name[: len(e.name) - len(suffix)]
            for e in entries
            if e.name.endswith(suffix) and e.is_file(follow_symlinks=False)
        ]
    return [VolumeRef(n) for n in sorted(names) if _is_id(n)]


def _is_id(name: str) -> bool:
    try:
        validate_id("volume id", name)
    except InvalidName:
        return False
    return True


#: Seconds after which a temporary file whose writer cannot be asked (another
#: host, or an untagged name from an older version) counts as left behind.
UNOWNED_TEMP_SECONDS: Final = 3600.0

_TAG = re.compile(r"([0-9a-f]{8})-(\d+)-(\d+)-[0-9a-f]{8}")


@functools.lru_cache(maxsize=8)
def _host_hash(host: str) -> str:
    return hashlib.sha256(host.encode()).hexdigest()[:8]


def owned_tag() -> str:
    """A unique name part saying which process writes the file: ``<host>-<pid>-<start>-<rand>``.

    ``<host>`` is 8 hex digits of the host name's sha256, ``<start>`` the
    process start time (`Owner.start`, 0 if unknown).
    """
    me = Owner.current("")
    return f"{_host_hash(me.host)}-{me.pid}-{me.start or 0}-{secrets.token_hex(4)}"


def written_by_me(name: str) -> bool:
    """Whether the temporary file `name` is tagged with this very process (see `owned_tag`)."""
    me = Owner.current("")
    found = _TAG.search(name)
    return (
        found is not None
        and found.group(1) == _host_hash(me.host)
        and int(found.group(2)) == me.pid
        and int(found.group(3)) == (me.start or 0)
    )


def tagged_volume(name: str) -> str | None:
    """The volume id an ``.incoming`` name ``<volume_id>.<tag>[suffix]`` is written for."""
    found = _TAG.search(name)
    if found is None or found.start() < 2 or name[found.start() - 1] != ".":
        return None
    return name[: found.start() - 1]


def temporary_owner_state(name: str, age: float) -> tuple[bool, str]:
    """Whether the temporary file `name` (`age` seconds old) is left behind, and why."""
    me = Owner.current("")
    found = _TAG.search(name)
    if found is None or found.group(1) != _host_hash(me.host):
        if age > UNOWNED_TEMP_SECONDS:
            return True, f"writer unknown or on another host, untouched for {age:.0f} s"
        return False, f"writer unknown or on another host, written {age:.0f} s ago"
    pid, start = int(found.group(2)), int(found.group(3))
    writer = Owner(me.host, pid, start or None, me.boot, "")
    if writer.liveness() is Liveness.DEAD:
        return True, f"its writer (pid {pid}) died"
    return False, f"its writer (pid {pid}) runs"


def sweep_temporary(paths: Iterable[str], *, dry_run: bool = False) -> list[tuple[str, bool, str]]:
    """Remove each temporary file of `paths` whose writer is gone (not if `dry_run`).

    Returns ``(path, left_behind, reason)`` for every path: left-behind
    ones are removed (unless `dry_run`), the others kept. Files that vanish
    meanwhile are skipped.
    """
    now = time.time()
    found: list[tuple[str, bool, str]] = []
    for path in paths:
        try:
            age = now - os.lstat(path).st_mtime
        except FileNotFoundError:
            continue
        left, reason = temporary_owner_state(os.path.basename(path), age)
        if left and not dry_run:
            unlink_if_exists(path)
        found.append((path, left, reason))
    return found


def temporary_files(directory: str, pattern: str = ".tmp-") -> list[str]:
    """The files directly in `directory` whose names start with `pattern` (none if absent)."""
    try:
        with os.scandir(directory) as entries:
            return [
                e.path
                for e in entries
                if e.name.startswith(pattern) and e.is_file(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


def sweep_volume_root(root: str, *, dry_run: bool = False) -> list[tuple[str, bool, str]]:
    """`sweep_temporary` over a volume directory's ``.incoming/*`` and ``.snapshots/*/.tmp-*``."""
    paths = temporary_files(os.path.join(root, ".incoming"), "")
    snapshots = os.path.join(root, ".snapshots")
    try:
        with os.scandir(snapshots) as entries:
            dirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        dirs = []
    for directory in dirs:
        paths += temporary_files(directory)
    return sweep_temporary(paths, dry_run=dry_run)
