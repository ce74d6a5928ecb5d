"""What a manager asks for: backup, restore, verify and delete requests.

Requests travel as JSON fields (`request_fields`, `decode_request`): in a
posted job (poster to conductor) and in a data step's arguments (conductor
to worker). During a rolling upgrade the two sides run different versions,
so the fields are versioned (`REQUEST_PROTOCOL`, docs/scale.md):

* a field added after the first release (`ADDED_FIELDS`) is sent only when
  it is not at its default, so a receiver that predates it decodes the
  request unchanged whenever the new field would change nothing;
* a receiver ignores a field it does not know, with a logged warning,
  unless the request's ``protocol`` says it is required (``"requires"``:
  fields a receiver must not ignore, `MUST_UNDERSTAND`): then it refuses the
  request with `IncompatibleRequest`, naming the fields;
* a request of a newer ``protocol.version`` (a change an older receiver
  cannot take by ignoring fields) is refused the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pieceworks.common_algorithms.format.manifest import check_labels
from pieceworks.common_algorithms.operations.guard import (
    DEFAULT_GUARD_MAX_CHUNKS,
    DEFAULT_GUARD_PERCENT,
    check_max_chunks,
    check_percent,
)
from pieceworks.protocols import validate_id
from pieceworks.protocols.chunks import (
    CODECS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CODEC,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
)
from pieceworks.protocols.errors import ConfigError, IncompatibleRequest, UnsupportedCodec

__all__ = [
    "ADDED_FIELDS",
    "BACKUP_STRATEGIES",
    "IDLE_BACKUP_STRATEGIES",
    "DEFAULT_CHUNK_SIZE",
    "MUST_UNDERSTAND",
    "PROTOCOL_FIELD",
    "REPLICATE_STRATEGIES",
    "REQUEST_PROTOCOL",
    "RESTORE_STRATEGIES",
    "BackupRequest",
    "ReplicateRequest",
    "RestoreRequest",
    "VerifyRequest",
    "decode_request",
    "new_backup_id",
    "new_operation_id",
    "request_fields",
]

#: Backup strategies in their default order for a volume in use (best first).
BACKUP_STRATEGIES: tuple[str, ...] = ("offload", "snapshot-stream", "direct-stream")
#: ... and for a volume not in use: it is read directly, no snapshot needed
#: (snapshot-stream stays as the fallback).
IDLE_BACKUP_STRATEGIES: tuple[str, ...] = ("offload", "direct-stream", "snapshot-stream")
#: Restore strategies in their default order.
RESTORE_STRATEGIES: tuple[str, ...] = ("offload", "stream-in")
#: Replication strategies in their default order.
REPLICATE_STRATEGIES: tuple[str, ...] = ("native", "stream", "via-store")
_MIN_CHUNK, _MAX_CHUNK = MIN_CHUNK_SIZE, MAX_CHUNK_SIZE

log = logging.getLogger(__name__)

#: The version of the request protocol this code speaks. Bumped only for a
#: change a receiver cannot take by ignoring a field (a field that changes
#: meaning, another shape of the arguments); adding a field does not bump it.
REQUEST_PROTOCOL: Final = 1
#: The key of a request's fields that holds ``{"version": int, "requires":
#: [field, ...]}``; absent: version 1, nothing required (what every sender of
#: version 1 sends when no field it uses is in `MUST_UNDERSTAND`).
PROTOCOL_FIELD: Final = "protocol"


def new_backup_id() -> str:
    """A fresh, unique backup id."""
    return f"bk-{secrets.token_hex(8)}"


def new_operation_id() -> str:
    """A fresh, unique id for a replication."""
    return f"rp-{secrets.token_hex(8)}"


def _check_order(given: tuple[str, ...], known: tuple[str, ...], what: str) -> None:
    unknown = [s for s in given if s not in known]
    if unknown or not given or len(set(given)) != len(given):
        raise ConfigError(
            f"invalid {what} strategy order {list(given)}: use distinct names from {list(known)}"
        )


@dataclass(frozen=True)
class BackupRequest:
    """Back up one volume.

    `in_use`: the volume is attached and may change while it is read; only
    strategies that read a snapshot are eligible unless `force` is set (the
    plan records the force). `incremental`: reuse the latest backup of the
    same volume in the store as the parent (only new chunks are uploaded;
    the new manifest is complete, so restore never reads the parent).
    `strategies` orders the strategies to consider; by default offload,
    then snapshot-stream and direct-stream for a volume in use, and
    direct-stream before snapshot-stream for one that is not (reading it
    directly is as consistent and skips the snapshot's cost).
    `labels` (string keys and values) are recorded in the manifest.
    `guard_percent`: the share (0 to 100 percent; 0 turns it off) of the
    chunks changed-blocks reports unchanged, and of those allocated-extents
    reports as holes, that the backup reads anyway to catch a lying driver
    (`pieceworks.common_algorithms.operations.guard`; at least one chunk of each);
    `guard_max_chunks` caps that sample at this many chunks of each kind
    (at least 1).
    """

    volume_id: str
    backup_id: str = field(default_factory=new_backup_id)
    in_use: bool = False
    force: bool = False
    incremental: bool = False
    codec: str = DEFAULT_CODEC
    chunk_size: int = DEFAULT_CHUNK_SIZE
    strategies: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    guard_percent: float = DEFAULT_GUARD_PERCENT
    guard_max_chunks: int = DEFAULT_GUARD_MAX_CHUNKS

    def __post_init__(self) -> None:
        validate_id("volume id", self.volume_id)
        validate_id("backup id", self.backup_id)
        try:
            object.__setattr__(self, "guard_percent", check_percent(self.guard_percent))
            check_max_chunks(self.guard_max_chunks)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            object.__setattr__(self, "labels", check_labels(self.labels))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not self.strategies:
            default = BACKUP_STRATEGIES if self.in_use else IDLE_BACKUP_STRATEGIES
            object.__setattr__(self, "strategies", default)
        if self.codec not in CODECS:
            raise UnsupportedCodec(
                f"unknown codec {self.codec!r}: choose one of {', '.join(CODECS)}"
            )
        if not _MIN_CHUNK <= self.chunk_size <= _MAX_CHUNK:
            raise ConfigError(f"chunk size {self.chunk_size} out of range: use 64 KiB to 64 MiB")
        _check_order(self.strategies, BACKUP_STRATEGIES, "backup")


@dataclass(frozen=True)
class RestoreRequest:
    """Restore backup `backup_id` into volume `volume_id`.

    The volume is created; an existing one is replaced only with
    `overwrite` (else the restore is refused with `VolumeExists` before
    anything is written).
    """

    backup_id: str
    volume_id: str
    strategies: tuple[str, ...] = RESTORE_STRATEGIES
    overwrite: bool = False

    def __post_init__(self) -> None:
        validate_id("backup id", self.backup_id)
        validate_id("volume id", self.volume_id)
        _check_order(self.strategies, RESTORE_STRATEGIES, "restore")


@dataclass(frozen=True)
class VerifyRequest:
    """Check every chunk of backup `backup_id` against its hash (the store only).

    A chunk object whose content does not match its hash is moved aside to
    ``quarantine/`` unless `quarantine` is false (a read-only check).
    """

    backup_id: str
    quarantine: bool = True

    def __post_init__(self) -> None:
        validate_id("backup id", self.backup_id)
        if not isinstance(self.quarantine, bool):
            raise ConfigError(f"quarantine must be true or false, not {self.quarantine!r}")


@dataclass(frozen=True)
class ReplicateRequest:
    """Copy volume `volume_id` (or its snapshot `snapshot_id`) to another backend.

    The copy lands in `target_volume_id` (None: the same id as the
    source); an existing target is replaced only with `overwrite` (else
    `VolumeExists`, before anything is written). A volume `in_use` is read
    from a temporary snapshot when the source backend can take one;
    otherwise only with `force` (recorded). Naming an existing
    `snapshot_id` reads that snapshot, which is never deleted.
    """

    volume_id: str
    target_volume_id: str | None = None
    snapshot_id: str | None = None
    in_use: bool = False
    force: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    strategies: tuple[str, ...] = REPLICATE_STRATEGIES
    operation_id: str = field(default_factory=new_operation_id)
    overwrite: bool = False

    def __post_init__(self) -> None:
        validate_id("volume id", self.volume_id)
        if self.target_volume_id is None:
            object.__setattr__(self, "target_volume_id", self.volume_id)
        validate_id("target volume id", self.target_volume)
        if self.snapshot_id is not None:
            validate_id("snapshot id", self.snapshot_id)
        validate_id("operation id", self.operation_id)
        if not _MIN_CHUNK <= self.chunk_size <= _MAX_CHUNK:
            raise ConfigError(f"chunk size {self.chunk_size} out of range: use 64 KiB to 64 MiB")
        _check_order(self.strategies, REPLICATE_STRATEGIES, "replicate")

    @property
    def target_volume(self) -> str:
        """The id of the volume the copy lands in (`target_volume_id`, resolved)."""
        return self.volume_id if self.target_volume_id is None else self.target_volume_id


#: Fields added after the first release, per request kind: sent only when not
#: at their default, so that a receiver that predates them still decodes the
#: request (and, at the default, would behave the same).
ADDED_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "BackupRequest": frozenset({"guard_percent", "guard_max_chunks"}),
}
#: Fields a receiver must understand when they are sent, per request kind: a
#: receiver that does not know one refuses the request (`IncompatibleRequest`)
#: instead of ignoring it. A field belongs here when ignoring it would change
#: what is written (not only what it costs): none of today's fields does; a
#: field added later goes here, and the receivers of its version know it.
MUST_UNDERSTAND: Final[Mapping[str, frozenset[str]]] = {}

R = TypeVar("R", BackupRequest, RestoreRequest, ReplicateRequest, VerifyRequest)


def request_fields(
    request: BackupRequest | RestoreRequest | ReplicateRequest | VerifyRequest,
) -> dict[str, Any]:
    """A request's fields, JSON-able (``strategies`` a list): what a job or a step carries.

    A field of `ADDED_FIELDS` at its default is left out; a field of
    `MUST_UNDERSTAND` that is sent is listed in ``protocol.requires`` (the
    ``protocol`` key is there only then). `decode_request` is the inverse.
    """
    kind = type(request).__name__
    fields = dataclasses.asdict(request)
    if not isinstance(request, VerifyRequest):  # the one request without strategies
        fields["strategies"] = list(request.strategies)
    defaults = {f.name: f.default for f in dataclasses.fields(request)}
    for name in ADDED_FIELDS.get(kind, ()):
        if fields[name] == defaults[name]:
            del fields[name]
    requires = sorted(MUST_UNDERSTAND.get(kind, frozenset()) & set(fields))
    if requires:
        fields[PROTOCOL_FIELD] = {"version": REQUEST_PROTOCOL, "requires": requires}
    return fields


def decode_request(cls: type[R], fields: Mapping[str, Any], *, strict: bool = False) -> R:
    """The `cls` request `fields` describe, as `request_fields` (or JSON) gives them.

    A receiver (a conductor rebuilding a job, a worker) decodes tolerantly: a
    field this version does not know is ignored with a logged warning. With
    `strict` (a request being posted: its fields come from this version) it
    is a `ConfigError`. Either way raise `IncompatibleRequest` for a
    ``protocol.version`` newer than `REQUEST_PROTOCOL`, a malformed
    ``protocol``, a field ``protocol.requires`` names that this version does
    not know, or a field the request lacks that this version needs; and
    `ConfigError` (or `UnsupportedCodec`) for a bad value.
    """
    kind = cls.__name__.removesuffix("Request").lower() + " request"
    given = dict(fields)
    version, requires = _protocol(given.pop(PROTOCOL_FIELD, None), kind)
    if version > REQUEST_PROTOCOL:
        raise IncompatibleRequest(
            f"the {kind} speaks request protocol {version}; this version of pieceworks speaks"
            f" {REQUEST_PROTOCOL}: upgrade it"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    lacking = sorted(set(requires) - known)
    if lacking:
        raise IncompatibleRequest(
            f"the {kind} needs field(s) {', '.join(lacking)}, which this version of pieceworks"
            f" (request protocol {REQUEST_PROTOCOL}) does not know: upgrade it"
        )
    unknown = sorted(set(given) - known)
    if unknown and strict:
        raise ConfigError(f"unknown {kind} field(s): {', '.join(unknown)}")
    if unknown:
        log.warning(
            "ignoring %s field(s) %s: this version of pieceworks (request protocol %d) does"
            " not know them, and the sender does not require them",
            kind,
            ", ".join(unknown),
            REQUEST_PROTOCOL,
        )
        for name in unknown:
            del given[name]
    needed = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in given
    )
    if needed and strict:
        raise ConfigError(f"the {kind} lacks field(s) {', '.join(needed)}")
    if needed:
        raise IncompatibleRequest(
            f"the {kind} lacks field(s) {', '.join(needed)}, which this version of pieceworks"
            " needs: the sender is older or broken"
        )
    if "strategies" in given:
        given["strategies"] = tuple(given["strategies"])
    return cls(**given)


def _protocol(value: object, kind: str) -> tuple[int, list[str]]:
    """``(version, requires)`` of a request's ``protocol`` (None: version 1, nothing)."""
    if value is None:
        return 1, []
    version = value.get("version") if isinstance(value, Mapping) else None
    requires = value.get("requires", []) if isinstance(value, Mapping) else None
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or version < 1
        or not isinstance(requires, list)
        or not all(isinstance(r, str) for r in requires)
    ):
        raise IncompatibleRequest(
            f'the {kind}\'s {PROTOCOL_FIELD} must be {{"version": int >= 1, "requires":'
            f" [field, ...]}}, not {value!r}"
        )
    return version, requires
