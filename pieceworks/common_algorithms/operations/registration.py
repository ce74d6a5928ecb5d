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
        my_flow.add(reg.build(in_use=True))  # volume_id: from the engine's store
    ... engines.run(my_flow, store={"volume_id": "vol-1"})["lab.backup.result"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taskflow.flow import Flow

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.operations.delete import delete_flow
from pieceworks.common_algorithms.operations.pieces import (
    backup_piece,
    feasibility,
    replicate_piece,
    restore_piece,
    verify_piece,
)
from pieceworks.common_algorithms.operations.plan import Plan
from pieceworks.common_algorithms.operations.planning import (
    plan_backup,
    plan_replicate,
    plan_restore,
    refuse_incomplete,
)
from pieceworks.common_algorithms.operations.requests import (
    BackupRequest,
    ReplicateRequest,
    RestoreRequest,
)
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
from pieceworks.registry import Feasibility, Registration, Registry

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


def _fixed(**given: object) -> dict[str, object]:
    """The request fields given at build time (None: take it from the store)."""
    return {k: v for k, v in given.items() if v is not None}


def _strategies(value: Sequence[str] | None) -> list[str] | None:
    return None if value is None else list(value)


def _backup_factory(backend: Backend, store: Store, name: str) -> Callable[..., Flow]:
    def make_backup(
        volume_id: str | None = None,
        backup_id: str | None = None,
        in_use: bool | None = None,
        force: bool | None = None,
        incremental: bool | None = None,
        codec: str | None = None,
        chunk_size: int | None = None,
        strategies: Sequence[str] | None = None,
        namespace: str | None = None,
    ) -> Flow:
        """Back up a volume into the store, best strategy first, falling back on failure.

        Each request field left None is read from the engine's store under
        its own name (``volume_id`` is then required, the rest optional).

        :param volume_id: the volume to back up
        :param backup_id: the new backup's id (default: a fresh one, drawn once)
        :param in_use: the volume is attached (only snapshot reads, unless forced)
        :param force: read a volume in use directly when no snapshot is possible
        :param incremental: upload only chunks the latest backup lacks
        :param codec: chunk compression (zstd, zlib, none)
        :param chunk_size: chunk size in bytes (64 KiB to 64 MiB)
        :param strategies: strategy order to consider
        :param namespace: prefix of atom names and symbols (default: the registration name)
        """
        fixed = _fixed(
            volume_id=volume_id,
            backup_id=backup_id,
            in_use=in_use,
            force=force,
            incremental=incremental,
            codec=codec,
            chunk_size=chunk_size,
            strategies=_strategies(strategies),
        )
        return backup_piece(backend, store, namespace or name, fixed)

    return make_backup


def _restore_factory(backend: Backend, store: Store, name: str) -> Callable[..., Flow]:
    def make_restore(
        backup_id: str | None = None,
        volume_id: str | None = None,
        strategies: Sequence[str] | None = None,
        namespace: str | None = None,
    ) -> Flow:
        """Restore a backup from the store into a volume, checking every chunk.

        Each request field left None is read from the engine's store under
        its own name (``backup_id`` and ``volume_id`` are then required).

        :param backup_id: the backup to restore
        :param volume_id: the volume to write (created or replaced)
        :param strategies: strategy order to consider
        :param namespace: prefix of atom names and symbols (default: the registration name)
        """
        fixed = _fixed(backup_id=backup_id, volume_id=volume_id, strategies=_strategies(strategies))
        return restore_piece(backend, store, namespace or name, fixed)

    return make_restore


def _verify_factory(store: Store, name: str) -> Callable[..., Flow]:
    def make_verify(backup_id: str | None = None, namespace: str | None = None) -> Flow:
        """Check every chunk of a backup against its hash; report each problem.

        :param backup_id: the backup to verify (None: the store symbol ``backup_id``)
        :param namespace: prefix of atom names and symbols (default: the registration name)
        """
        return verify_piece(store, namespace or name, _fixed(backup_id=backup_id))

    return make_verify


def _planner(
    operation: str, plan: Callable[[dict[str, Any]], Plan], placeholders: dict[str, object]
) -> Feasibility:
    def plan_for(args: Mapping[str, Any]) -> Plan:
        fields = {**placeholders, **_fixed(**dict(args))}
        fields.pop("namespace", None)
        if "strategies" in fields:
            fields["strategies"] = tuple(fields["strategies"])  # type: ignore[arg-type]
        return plan(fields)

    return feasibility(operation, plan_for)


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
    `operations`, listing the pieces that would. The backup, restore and
    verify factories take each request field as a keyword argument or, left
    out, from the engine's store (see `pieceworks.common_algorithms.operations.pieces`),
    and provide ``<registration name>.result`` (e.g. ``lab.backup.result``)
    with the plan; ``delete(backup_id=...)`` takes its id at build time.
    Each registration can say, for given build arguments, whether a strategy
    could run (`Registry.find(..., request=...)`).
    """
    refuse_incomplete(backend, operations)
    tags = backend_tags(backend)
    name = backend.name

    def make_delete(backup_id: str) -> Flow:
        """Delete a backup's manifest, then collect chunks no manifest references.

        :param backup_id: the backup to delete
        """
        return delete_flow(store, backup_id)

    backup_check = _planner(
        "backup",
        lambda f: plan_backup(backend, store, BackupRequest(**f)),
        {"volume_id": "placeholder"},
    )
    restore_check = _planner(
        "restore",
        lambda f: plan_restore(backend, store, RestoreRequest(**f)),
        {"backup_id": "placeholder", "volume_id": "placeholder"},
    )
    out = [registry.register_driver(backend.driver, name=name)]
    factories: dict[str, tuple[Callable[..., Flow], tuple[str, ...], Feasibility | None]] = {
        "backup": (_backup_factory(backend, store, f"{name}.backup"), tags["backup"], backup_check),
        "restore": (
            _restore_factory(backend, store, f"{name}.restore"),
            tags["restore"],
            restore_check,
        ),
        "verify": (_verify_factory(store, f"{name}.verify"), ("verify",), None),
        "delete": (make_delete, ("delete",), None),
    }
    for op, (factory, provides, check) in factories.items():
        if provides:
            out.append(
                registry.register(
                    factory,
                    provides=provides,
                    name=f"{name}.{op}",
                    backend=name,
                    preference=preference,
                    feasible=check,
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
    (``volume_id=..., target_volume_id=..., snapshot_id=..., in_use=...``) at
    build time or from the engine's store, and provides
    ``<source>.replicate-to.<target>.result`` with the plan.
    Refused (`InvalidDriver`) if no strategy could ever replicate between them.
    """
    tags = replication_tags(source, target, store)
    if not tags:
        raise InvalidDriver(
            f"backends '{source.name}' and '{target.name}' complete no replicate strategy:"
            " a source needs replicate-to-peer, stream-out (with stream-in on the target)"
            " or push-to-object-store (with pull-from-object-store on the target and a store)"
        )

    name = f"{source.name}.replicate-to.{target.name}"

    def make_replicate(
        volume_id: str | None = None,
        target_volume_id: str | None = None,
        snapshot_id: str | None = None,
        in_use: bool | None = None,
        force: bool | None = None,
        chunk_size: int | None = None,
        strategies: Sequence[str] | None = None,
        operation_id: str | None = None,
        namespace: str | None = None,
    ) -> Flow:
        """Copy a volume (or one of its snapshots) to the target backend, best strategy first.

        Each request field left None is read from the engine's store under
        its own name (``volume_id`` is then required, the rest optional).

        :param volume_id: the volume to copy
        :param target_volume_id: the copy's id on the target (default: the same)
        :param snapshot_id: copy this existing snapshot instead of the live volume
        :param in_use: the volume is attached (read through a temporary snapshot)
        :param force: read a volume in use directly when no snapshot is possible
        :param chunk_size: chunk size in bytes (64 KiB to 64 MiB)
        :param strategies: strategy order to consider
        :param operation_id: the replication's id (default: a fresh one, drawn once)
        :param namespace: prefix of atom names and symbols (default: the registration name)
        """
        fixed = _fixed(
            volume_id=volume_id,
            target_volume_id=target_volume_id,
            snapshot_id=snapshot_id,
            in_use=in_use,
            force=force,
            chunk_size=chunk_size,
            strategies=_strategies(strategies),
            operation_id=operation_id,
        )
        return replicate_piece(source, target, store, namespace or name, fixed)

    check = _planner(
        "replicate",
        lambda f: plan_replicate(source, target, store, ReplicateRequest(**f)),
        {"volume_id": "placeholder"},
    )
    return registry.register(
        make_replicate,
        provides=(*tags, f"to:{target.name}"),
        name=name,
        backend=source.name,
        preference=preference,
        feasible=check,
    )
