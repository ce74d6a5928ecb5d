"""Value types passed between a manager, the common algorithms and drivers.

All are immutable and validate themselves on construction, so a driver that
receives a `VolumeRef` knows its id is a safe single path component.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from pieceworks.protocols.errors import InvalidName

__all__ = [
    "BackendSpec",
    "ChunkRef",
    "Extent",
    "ObjectInfo",
    "PushedVolume",
    "ReplicatedVolume",
    "SnapshotRef",
    "Source",
    "StoreSpec",
    "VolumeRef",
    "chunks_from_json",
    "chunks_to_json",
    "validate_id",
    "validate_key",
]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def validate_id(kind: str, value: str) -> str:
    """Return `value` if it is a safe id, else raise `InvalidName`.

    A safe id is 1-128 characters of ASCII letters, digits, ``.``, ``_`` and
    ``-``, starting with a letter or digit: it can be used as one path
    component or object-name component and never escapes its directory.
    `kind` ("volume id", "backup id", ...) names the value in the message.
    """
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidName(
            f"invalid {kind} {value!r}: use 1-128 characters of letters, digits,"
            " '.', '_' or '-', starting with a letter or digit"
        )
    return value


def validate_key(key: str) -> str:
    """Return `key` if it is a safe object key, else raise `InvalidName`.

    A key is one or more ``/``-separated parts, each a safe name (no empty
    part, no ``.`` or ``..``, no leading ``/``), so that a POSIX store can map
    it to a path under its root and nothing escapes that root.
    """
    parts = key.split("/") if isinstance(key, str) else [""]
    if not parts or not all(_KEY_PART.fullmatch(p) for p in parts):
        raise InvalidName(
            f"invalid object key {key!r}: use '/'-separated parts of letters,"
            " digits, '.', '_' or '-', each starting with a letter or digit"
        )
    return key


@dataclass(frozen=True, slots=True)
class VolumeRef:
    """A volume on a backend, named by the backend's own id for it."""

    volume_id: str

    def __post_init__(self) -> None:
        validate_id("volume id", self.volume_id)

    def __str__(self) -> str:
        """``volume 'vol-1'``: how messages name it (the repr is for debugging)."""
        return f"volume {self.volume_id!r}"


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """A point-in-time snapshot of a volume, as the backend names it."""

    volume_id: str
    snapshot_id: str

    def __post_init__(self) -> None:
        validate_id("volume id", self.volume_id)
        validate_id("snapshot id", self.snapshot_id)

    def __str__(self) -> str:
        """``snapshot 's1' of volume 'vol-1'``: how messages name it."""
        return f"snapshot {self.snapshot_id!r} of volume {self.volume_id!r}"

    @property
    def volume(self) -> VolumeRef:
        """The volume this snapshot was taken of."""
        return VolumeRef(self.volume_id)


#: What a reading capability reads from: a live volume or one of its snapshots.
Source = VolumeRef | SnapshotRef


@dataclass(frozen=True, slots=True, order=True)
class Extent:
    """A byte range ``[offset, offset + length)`` of a volume."""

    offset: int
    length: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.length < 0:
            raise ValueError(f"extent with negative offset or length: {self}")

    @property
    def end(self) -> int:
        """The first byte after the extent."""
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One stored chunk of a backup, as listed in its manifest.

    `digest` is the chunk's id: the hex sha256 of its plain (uncompressed)
    bytes, or in an encrypted store their keyed HMAC-SHA256
    (`pieceworks.protocols.encryption`);
    `codec` is how the stored object is compressed (``zstd``, ``zlib`` or
    ``none``); `stored_length` is the stored object's size in bytes.
    """

    offset: int
    length: int
    digest: str
    codec: str
    stored_length: int


def chunks_to_json(chunks: Iterable[ChunkRef]) -> list[list[object]]:
    """Chunk refs as compact arrays ``[offset, length, digest, codec, stored_length]``.

    The one form chunk lists take in TaskFlow's persisted results and on the
    remote target's wire.
    """
    return [[c.offset, c.length, c.digest, c.codec, c.stored_length] for c in chunks]


def chunks_from_json(rows: object) -> tuple[ChunkRef, ...]:
    """The inverse of `chunks_to_json`; `ValueError` if malformed."""
    if not isinstance(rows, list):
        raise ValueError("chunks: expected a list")
    out: list[ChunkRef] = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 5:
            raise ValueError(f"chunk {row!r}: expected [offset, length, digest, codec, size]")
        offset, length, digest, codec, stored = row
        if not all(
            isinstance(x, int) and not isinstance(x, bool) for x in (offset, length, stored)
        ):
            raise ValueError(f"chunk {row!r}: offset, length and size must be integers")
        out.append(ChunkRef(offset, length, str(digest), str(codec), stored))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PushedVolume:
    """What a backend reports after pushing a volume into a store itself.

    `size` is the source's size in bytes; `chunks` one `ChunkRef` per
    non-zero chunk, sorted by offset (a tuple, or any sequence of them such
    as a `pieceworks.protocols.chunk_list.ChunkList`); `bytes_read` what the backend read;
    `bytes_written` the stored bytes of the chunk objects it newly wrote,
    and `chunks_written` how many those were (None: the backend does not
    say, as drivers written before it was added).
    """

    size: int
    chunks: Sequence[ChunkRef]
    bytes_read: int
    bytes_written: int
    chunks_written: int | None = None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What an object store reports about one object without reading it."""

    key: str
    size: int
    modified: float  # seconds since the epoch


def _frozen(options: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(options))


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """How to reach an object store: its driver name and options.

    Handed to a backend that provides push-to-object-store or
    pull-from-object-store so that it can open the store itself. Options
    may hold secrets; the `repr` never shows option values.
    """

    name: str
    driver: str
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_id("store name", self.name)
        validate_id("store driver", self.driver)
        object.__setattr__(self, "options", _frozen(self.options))

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.options))
        return f"StoreSpec(name={self.name!r}, driver={self.driver!r}, options=<{keys}>)"


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """How to reach a configured backend: its name, driver name and options.

    Handed to a backend that provides replicate-to-peer so that it can reach
    its peer directly. Options may hold secrets; the `repr` never shows
    option values.
    """

    name: str
    driver: str
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_id("backend name", self.name)
        validate_id("backend driver", self.driver)
        object.__setattr__(self, "options", _frozen(self.options))

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.options))
        return f"BackendSpec(name={self.name!r}, driver={self.driver!r}, options=<{keys}>)"


@dataclass(frozen=True, slots=True)
class ReplicatedVolume:
    """What a backend reports after copying a volume to a peer itself."""

    size: int
    bytes_sent: int
