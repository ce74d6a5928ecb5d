"""What a manager asks for: backup, restore, verify and delete requests."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

from oslo_utils import units

from pieceworks.common_algorithms.format.manifest import check_labels
from pieceworks.common_algorithms.operations.guard import (
    DEFAULT_GUARD_MAX_CHUNKS,
    DEFAULT_GUARD_PERCENT,
    check_max_chunks,
    check_percent,
)
from pieceworks.protocols import validate_id
from pieceworks.protocols.chunks import CODECS, DEFAULT_CHUNK_SIZE, DEFAULT_CODEC
from pieceworks.protocols.errors import ConfigError, UnsupportedCodec

__all__ = [
    "BACKUP_STRATEGIES",
    "IDLE_BACKUP_STRATEGIES",
    "DEFAULT_CHUNK_SIZE",
    "REPLICATE_STRATEGIES",
    "RESTORE_STRATEGIES",
    "BackupRequest",
    "ReplicateRequest",
    "RestoreRequest",
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
_MIN_CHUNK, _MAX_CHUNK = 64 * units.Ki, 64 * units.Mi


def new_backup_id() -> str:
    """A fresh, unique backup id."""
    return f"bk-{uuid.uuid4().hex[:16]}"


def new_operation_id() -> str:
    """A fresh, unique id for a replication."""
    return f"rp-{uuid.uuid4().hex[:16]}"


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


def request_fields(request: BackupRequest | RestoreRequest | ReplicateRequest) -> dict[str, Any]:
    """A request's fields, JSON-able (``strategies`` a list): what a job carries."""
    fields = dataclasses.asdict(request)
    fields["strategies"] = list(request.strategies)
    return fields
