"""The error hierarchy every layer of pieceworks raises and catches.

Driver authors raise these from capability methods; the common algorithms and
the CLI turn them into plans, fallbacks, messages and exit codes. Catch the
narrowest class you can handle; everything derives from `PieceworksError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = [
    "BackendError",
    "BackendNotFound",
    "BackupNotFound",
    "ChangeTrackingLost",
    "ConfigError",
    "CorruptionError",
    "DriverNotFound",
    "IncompatibleRequest",
    "InvalidDriver",
    "InvalidName",
    "NotFound",
    "ObjectNotFound",
    "OperationCancelled",
    "PieceworksError",
    "ShortRead",
    "SnapshotNotFound",
    "StoreMissing",
    "StoreNotFound",
    "TransientError",
    "UnsupportedCodec",
    "WaitTimedOut",
    "VolumeExists",
    "VolumeNotFound",
]


def _kebab_case(name: str) -> str:
    """A class name as a kebab-case reference: ``GCLockTimeout`` -> ``gc-lock-timeout``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name.lstrip("_"))
    return words.lower()


class PieceworksError(Exception):
    """Base of every error pieceworks raises on purpose.

    Each class names its kind of error with `reference`, a stable kebab-case
    word (as pip's ``DiagnosticPipError.reference``) that JSON consumers test
    instead of the message: a class sets it, or it is derived from the class
    name (``GCLockTimeout`` -> ``gc-lock-timeout``). `hint` says in one
    sentence what the user can do about it ("" when nothing general helps).
    The instance's public attributes are its context (``offset``,
    ``problems``, ``waited_seconds``...), printed with them under ``--json``.
    """

    reference: ClassVar[str] = "pieceworks-error"
    hint: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "reference" not in cls.__dict__:
            cls.reference = _kebab_case(cls.__name__)


class NotFound(PieceworksError, LookupError):
    """Something that was asked for does not exist.

    The registry raises a subclass of it when a search matches nothing, and
    drivers and stores raise the specific subclasses below.
    """


class VolumeNotFound(NotFound):
    """A driver has no volume with the id it was given."""

    hint = "`pieceworks volumes` lists the backend's volumes"


class VolumeExists(PieceworksError):
    """An operation would replace an existing volume and was not asked to.

    Restore and replicate raise it before they write anything; the message
    names the volume, its backend and its size.
    """

    hint = "add --overwrite to replace it, or name another target volume"


class SnapshotNotFound(NotFound):
    """A driver has no snapshot with the id it was given."""


class ObjectNotFound(NotFound):
    """An object store has no object under the key it was given."""


class BackupNotFound(NotFound):
    """A store holds no backup with the id that was given."""

    hint = "`pieceworks list` shows the backups of the store"


class DriverNotFound(NotFound):
    """No installed driver (or store driver) has the name that was given."""


class BackendNotFound(NotFound):
    """The configuration names no backend with the name that was given."""

    hint = "`pieceworks config` shows the configured backends"


class StoreNotFound(NotFound):
    """The configuration names no store with the name that was given."""

    hint = "`pieceworks config` shows the configured stores"


class StoreMissing(NotFound):
    """A configured store's storage does not exist, and it was opened without creating it.

    Raised by a store driver opened with ``create=False`` when its
    directory, Swift container or S3 bucket is absent (or, for the POSIX
    store, the directory holds something else than a pieceworks store), and
    by `pieceworks.common_algorithms.opening` again with the configured
    store's name and origin in the message. Nothing was created.
    `location` is the driver's own description of what is missing
    (``swift store 'bakcups' at http://host/auth/v1.0``); `store` is the
    configured store's name (None where the driver raised it). The
    commands that only read a store open it this way, so a misspelt store
    is an error (exit 3) instead of an empty store created in its place.
    """

    hint = (
        "check the store's name and location in the configuration (`pieceworks config`);"
        " a backup creates a store that does not exist yet"
    )

    def __init__(self, message: str, location: str = "", store: str | None = None) -> None:
        super().__init__(message)
        self.location = location
        self.store = store


class OperationCancelled(PieceworksError):
    """An operation stopped early because it was cancelled, and undid what it could.

    The chunk pipeline raises it when its caller sets the `cancel` event; a
    storage target when the manager that asked for the operation went away.
    """


class InvalidName(PieceworksError, ValueError):
    """An id or object key is malformed or could escape its directory."""


class InvalidDriver(PieceworksError, TypeError):
    """A driver does not provide what it claims.

    Raised at registration, before any work starts; the message names the
    driver, the capability and every missing or mismatched member.
    `problems` holds the same as data: capability name (or ``"class"`` for
    what belongs to none) -> the problems found, each starting with the
    member's name (``"open_read: returns str, but ..."``); empty when the
    error is not about members (a driver claiming nothing, a strategy that
    cannot run).
    """

    def __init__(self, message: str, problems: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(message)
        self.problems: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {k: tuple(v) for k, v in (problems or {}).items()}
        )


class ConfigError(PieceworksError, ValueError):
    """Configuration is malformed or names something that cannot be used."""

    hint = "`pieceworks config` shows the configuration in use and where it comes from"


class IncompatibleRequest(PieceworksError):
    """A request this version cannot honour: a newer request protocol, a field the
    sender says must be understood that this version does not know, or a field
    this version needs that the request lacks (a rolling upgrade gone wrong).

    Raised where the request is decoded (a worker, a conductor rebuilding a
    job); a conductor reports a worker's as its own, naming the worker's side.
    """

    hint = (
        "run the same pieceworks version on conductors and workers, or upgrade the older"
        " side first (docs/scale.md, rolling upgrades)"
    )


class UnsupportedCodec(PieceworksError, ValueError):
    """A compression codec was asked for that this side cannot apply."""


class WaitTimedOut(PieceworksError, TimeoutError):
    """A wait for something to end gave up; what it waited for may still end.

    `waited_seconds` is how long it waited. The message names what was
    waited for (a job by its id, say). It is a `TimeoutError` too, so code
    that caught the builtin one still does.
    """

    hint = "what was waited for may still end: wait again"

    def __init__(self, message: str, waited_seconds: float) -> None:
        super().__init__(message)
        self.waited_seconds = waited_seconds


class CorruptionError(PieceworksError):
    """Stored data does not match its recorded hash.

    `offset` is the byte offset, within the volume, of the first byte of the
    chunk that failed its check, or ``None`` where no volume offset applies
    (a damaged manifest, say).
    """

    hint = "`pieceworks check` lists what is damaged; `pieceworks verify ID` checks one backup"

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class BackendError(PieceworksError):
    """A backend failed to do what a capability promised.

    Raise it (or a subclass) from a capability method for a failure that a
    different strategy may avoid; the common algorithms revert the failed
    strategy and try the next eligible one.
    """


class ShortRead(BackendError):
    """A source held fewer bytes than its size promised: it shrank while read.

    Raised instead of reading the missing range as zeros. No strategy falls
    back from it: the next one would read a different volume than the one
    asked for (what it is now, not what it was).
    """

    hint = "the source changed size while it was read: snapshot it (or stop its writer), run again"


class TransientError(BackendError):
    """A failure that the same call may not meet again (timeout, 503, ...).

    Stores and drivers raise it so that callers retry with backoff before
    they give up on a strategy.
    """


class ChangeTrackingLost(BackendError):
    """A changed-blocks query cannot answer for the token it was given.

    The caller falls back to reading the whole source; nothing is lost.
    """
