"""Why an operating-system call failed, in words, for messages a user reads.

``str(OSError)`` is ``[Errno 21] Is a directory: 'adir'``: a number that
means nothing to a reader and the path repeated in Python's quoting.
Messages name the action and the path themselves and end with `os_reason`::

    raise ConfigError(f"cannot read the passphrase file {path}: {os_reason(exc, path)}")
    # cannot read the passphrase file /etc/pw/x: /etc/pw is not a directory

`os_error_text` is for a message that does not name the path: the reason
and the file name(s) the error carries. Standard library only.
"""

from __future__ import annotations

import errno
import os

__all__ = ["os_cause", "os_error_text", "os_reason"]


def os_reason(exc: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """Why `exc` happened: its ``strerror`` (``Is a directory``), never ``[Errno N]``.

    With `path` (what the caller tried to use): a path through a file
    (``ENOTDIR``) names that file (``/a/b is not a directory``), and
    a missing parent directory says so (``directory /a does not exist``).
    An error without ``strerror`` (raised with a message only) gives that message.
    """
    if exc.strerror is None:
        return str(exc) or type(exc).__name__
    if path is not None:
        text = os.fspath(path)
        if exc.errno == errno.ENOTDIR:
            blocker = _file_in_the_way(text)
            if blocker is not None:
                return f"{blocker} is not a directory"
        if exc.errno == errno.ENOENT:
            parent = os.path.dirname(os.path.abspath(text))
            if not os.path.lexists(parent):
                return f"directory {_shown(text, parent)} does not exist"
    return exc.strerror


def os_error_text(exc: OSError) -> str:
    """`os_reason` followed by the file name(s) `exc` carries: ``Is a directory: adir``."""
    names = [os.fsdecode(n) for n in (exc.filename, exc.filename2) if n is not None]
    reason = os_reason(exc)
    if not names or exc.strerror is None:
        return reason
    return f"{reason}: {' -> '.join(names)}"


def os_cause(exc: BaseException) -> OSError | None:
    """The system error at the bottom of `exc` (one with a ``strerror``), or None.

    Libraries wrap the socket's error in their own (requests' ``ConnectionError``
    around urllib3's ``MaxRetryError`` around ``NewConnectionError`` around
    ``ConnectionRefusedError``), and their messages end in ``[Errno 111]
    Connection refused``. Looks through ``__cause__``, ``__context__``, a
    ``reason`` attribute and exception arguments, breadth first.
    """
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror is not None:
            return current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        inner += list(current.args)
        queue += [e for e in inner if isinstance(e, BaseException)]
    return None


def _file_in_the_way(path: str) -> str | None:
    """The first ancestor of `path` that exists and is not a directory (None if none)."""
    absolute = os.path.abspath(path)
    parts: list[str] = []
    head = os.path.dirname(absolute)
    while head and head not in parts:
        parts.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for ancestor in reversed(parts):  # from the root down
        if os.path.lexists(ancestor) and not os.path.isdir(ancestor):
            return _shown(path, ancestor)
    return None


def _shown(given: str, absolute: str) -> str:
    """`absolute` as the user wrote it when `given` was relative (``adir/x`` → ``adir``)."""
    if os.path.isabs(given):
        return absolute
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith("..") else relative
