"""Register a backend's flows in the registry under what it can do.

`register_backend` is how a manager learns, without knowing any driver,
which backends can do what: it registers the verified driver and one flow
factory per operation, tagged with what the backend's capabilities allow:

=====================  ==================================================
tag                    the backend can...
=====================  ==================================================
``live-backup``        back up a volume in use (snapshot + a way out)
``fast-backup``        back up without volume data crossing the manager
                       (push-to-object-store)
``slow-backup``        back up by streaming through the manager (stream-out)
``incremental-backup`` back up incrementally (always: chunks are
                       content-addressed; only new chunks are uploaded)
``changed-block-backup`` read only what changed (changed-blocks)
``sparse-backup``      skip holes without reading them (allocated-extents)
``compressed-offload`` compress before data leaves it (push + compress)
``offload-restore``    restore without data crossing the manager (pull)
``stream-restore``     restore through the manager (stream-in)
``replicate``          copy volumes to a given peer backend
``live-replicate``     ... while they are in use (the source has snapshot)
``native-replicate``   ... directly, backend to backend (replicate-to-peer)
=====================  ==================================================

Plus the operation names ``backup``, ``restore``, ``verify``, ``delete``.
A manager then does::

    for reg in registry.find(any_of=["fast-backup", "live-backup"], backend="lab"):
        my_flow.add(reg.build(volume_id="vol-1", in_use=True))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskflow.flow import Flow

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.backup import backup_flow
from pieceworks.common_algorithms.delete import delete_flow
from pieceworks.common_algorithms.planning import plan_replicate, refuse_incomplete
from pieceworks.common_algorithms.replicate import replicate_flow
from pieceworks.common_algorithms.requests import BackupRequest, ReplicateRequest, RestoreRequest
from pieceworks.common_algorithms.restore import restore_flow
from pieceworks.common_algorithms.verify import verify_flow
from pieceworks.protocols import (
    IAllocatedExtents,
    IChangedBlocks,
    ICompress,
    InvalidDriver,
    IPullFromObjectStore,
    IPushToObjectStore,
    ISnapshot,
    IStreamIn,
    IStreamOut,
)
from pieceworks.registry import Registration, Registry

__all__ = ["backend_tags", "register_backend", "register_replication", "replication_tags"]


def backend_tags(backend: Backend) -> dict[str, tuple[str, ...]]:
    """The tags each operation of `backend` is registered under."""
    has = backend.provides
    backup: list[str] = []
    if has(IPushToObjectStore) or has(IStreamOut):
        backup += ["backup", "incremental-backup"]
        if has(ISnapshot):
            backup.append("live-backup")
        if has(IPushToObjectStore):
            backup.append("fast-backup")
            if has(ICompress):
                backup.append("compressed-offload")
        if has(IStreamOut):
            backup.append("slow-backup")
            if has(IAllocatedExtents):
                backup.append("sparse-backup")
            if has(IChangedBlocks):
                backup.append("changed-block-backup")
    restore: list[str] = []
    if has(IPullFromObjectStore):
        restore += ["restore", "offload-restore"]
    if has(IStreamIn):
        restore += [*(["restore"] if not restore else []), "stream-restore"]
    return {"backup": tuple(backup), "restore": tuple(restore)}


def register_backend(
    registry: Registry,
    backend: Backend,
    store: Store,
    *,
    operations: tuple[str, ...] = ("backup", "restore"),
    preference: int = 0,
) -> list[Registration]:
    """Register `backend`'s driver and its backup/restore/verify/delete flow factories.

    The driver is registered under its capabilities only; the tags go on the
    flow factories, so a search by tag returns flows a manager can add.

    Refuse (`InvalidDriver`) a backend that completes no strategy for one of
    `operations`, listing the pieces that would. Each factory takes the
    request's fields as keyword arguments and returns a fresh flow:
    ``backup(volume_id=..., in_use=..., ...)``, ``restore(backup_id=...,
    volume_id=...)``, ``verify(backup_id=...)``, ``delete(backup_id=...)``.
    """
    refuse_incomplete(backend, operations)
    tags = backend_tags(backend)
    name = backend.name

    def make_backup(**fields: Any) -> Flow:
        return backup_flow(backend, store, BackupRequest(**fields))

    def make_restore(**fields: Any) -> Flow:
        return restore_flow(backend, store, RestoreRequest(**fields))

    def make_verify(backup_id: str) -> Flow:
        return verify_flow(store, backup_id)

    def make_delete(backup_id: str) -> Flow:
        return delete_flow(store, backup_id)

    out = [registry.register_driver(backend.driver, name=name)]
    factories: dict[str, tuple[Callable[..., Flow], tuple[str, ...]]] = {
        "backup": (make_backup, tags["backup"]),
        "restore": (make_restore, tags["restore"]),
        "verify": (make_verify, ("verify",)),
        "delete": (make_delete, ("delete",)),
    }
    for op, (factory, provides) in factories.items():
        if provides:
            out.append(
                registry.register(
                    factory,
                    provides=provides,
                    name=f"{name}.{op}",
                    backend=name,
                    preference=preference,
                )
            )
    return out


def replication_tags(source: Backend, target: Backend, store: Store | None) -> tuple[str, ...]:
    """The tags a replication from `source` to `target` is registered under."""
    plan = plan_replicate(source, target, store, ReplicateRequest("probe", in_use=False))
    if not plan.eligible:
        return ()
    tags = ["replicate"]
    if source.provides(ISnapshot):
        tags.append("live-replicate")
    if "native" in plan.eligible:
        tags.append("native-replicate")
    return tuple(tags)


def register_replication(
    registry: Registry,
    source: Backend,
    target: Backend,
    store: Store | None = None,
    *,
    preference: int = 0,
) -> Registration:
    """Register the flow factory replicating from `source` to `target`.

    Registered with ``backend=source.name`` under `replication_tags` plus the
    tag ``to:<target>``; the factory takes `ReplicateRequest` fields
    (``volume_id=..., target_volume_id=..., snapshot_id=..., in_use=...``).
    Refused (`InvalidDriver`) if no strategy could ever replicate between them.
    """
    tags = replication_tags(source, target, store)
    if not tags:
        raise InvalidDriver(
            f"backends '{source.name}' and '{target.name}' complete no replicate strategy:"
            " a source needs replicate-to-peer, stream-out (with stream-in on the target)"
            " or push-to-object-store (with pull-from-object-store on the target and a store)"
        )

    def make_replicate(**fields: Any) -> Flow:
        return replicate_flow(source, target, ReplicateRequest(**fields), store=store)

    return registry.register(
        make_replicate,
        provides=(*tags, f"to:{target.name}"),
        name=f"{source.name}.replicate-to.{target.name}",
        backend=source.name,
        preference=preference,
    )
