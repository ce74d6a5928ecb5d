"""Read a backend's capabilities and plan backups and restores.

Planning is pure: it looks only at what the driver provides, the store and
the request, never at volume data, so a plan can be shown before anything
runs (``pieceworks plan backup``).
"""

from __future__ import annotations

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.operations.plan import Plan, StrategyChoice
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
    IReplicateToPeer,
    ISnapshot,
    IStreamIn,
    IStreamOut,
)

__all__ = [
    "plan_backup",
    "plan_replicate",
    "plan_restore",
    "refuse_incomplete",
    "via_store_sides",
]


def _offload(backend: Backend, store: Store, req: BackupRequest) -> StrategyChoice:
    name = "offload"
    if not backend.provides(IPushToObjectStore):
        return StrategyChoice(
            name, False, "the backend has no push-to-object-store", needs=("push-to-object-store",)
        )
    if (refusal := store.handoff_refusal(backend)) is not None:
        return StrategyChoice(name, False, refusal)
    enhancers = ("compress",) if backend.provides(ICompress) else ()
    where = f"the backend writes to store '{store.name}' itself; no volume data crosses the manager"
    if req.in_use and backend.provides(ISnapshot):
        return StrategyChoice(name, True, where + ", from a temporary snapshot", enhancers)
    if req.in_use and not req.force:
        return StrategyChoice(
            name,
            False,
            "the volume is in use, the backend has no snapshot and force is not set",
            needs=("push-to-object-store", "snapshot"),
        )
    forced = " (forced: pushed while in use)" if req.in_use else ""
    return StrategyChoice(name, True, where + forced, enhancers)


def _stream_enhancers(backend: Backend, req: BackupRequest) -> tuple[str, ...]:
    out = []
    if backend.provides(IAllocatedExtents):
        out.append("allocated-extents")
    if req.incremental and backend.provides(IChangedBlocks):
        out.append("changed-blocks")
    return tuple(out)


def _snapshot_stream(backend: Backend, req: BackupRequest) -> StrategyChoice:
    name = "snapshot-stream"
    lacks = [
        n
        for n, iface in (("snapshot", ISnapshot), ("stream-out", IStreamOut))
        if not backend.provides(iface)
    ]
    if lacks:
        return StrategyChoice(
            name,
            False,
            f"the backend has no {' and no '.join(lacks)}",
            needs=("snapshot", "stream-out"),
        )
    return StrategyChoice(
        name,
        True,
        "a temporary snapshot is streamed through the manager"
        + ("; the volume stays in use" if req.in_use else ""),
        _stream_enhancers(backend, req),
    )


def _direct_stream(backend: Backend, req: BackupRequest) -> StrategyChoice:
    name = "direct-stream"
    if not backend.provides(IStreamOut):
        return StrategyChoice(name, False, "the backend has no stream-out", needs=("stream-out",))
    if req.in_use and not req.force:
        return StrategyChoice(name, False, "the volume is in use and force is not set")
    reason = (
        "forced: the volume is read while in use (recorded)"
        if req.in_use
        else "the volume is not in use: it is read directly"
    )
    return StrategyChoice(name, True, reason, _stream_enhancers(backend, req))


def plan_backup(backend: Backend, store: Store, request: BackupRequest) -> Plan:
    """The backup plan: every strategy in the request's order, each with its reason."""
    by_name = {
        "offload": lambda: _offload(backend, store, request),
        "snapshot-stream": lambda: _snapshot_stream(backend, request),
        "direct-stream": lambda: _direct_stream(backend, request),
    }
    notes = []
    if request.in_use and request.force:
        notes.append("force is set: a strategy may read the volume while it is in use")
    if request.incremental:
        notes.append("incremental: only chunks not already in the store are uploaded")
    return Plan(
        "backup", backend.name, tuple(by_name[s]() for s in request.strategies), tuple(notes)
    )


def plan_restore(backend: Backend, store: Store, request: RestoreRequest) -> Plan:
    """The restore plan: offload (pull) then stream-in, each with its reason."""
    choices = []
    for name in request.strategies:
        if name == "offload":
            if not backend.provides(IPullFromObjectStore):
                choices.append(
                    StrategyChoice(
                        name,
                        False,
                        "the backend has no pull-from-object-store",
                        needs=("pull-from-object-store",),
                    )
                )
            elif (refusal := store.handoff_refusal(backend)) is not None:
                choices.append(StrategyChoice(name, False, refusal))
            else:
                choices.append(
                    StrategyChoice(name, True, f"the backend reads store '{store.name}' itself")
                )
        elif not backend.provides(IStreamIn):
            choices.append(
                StrategyChoice(name, False, "the backend has no stream-in", needs=("stream-in",))
            )
        else:
            choices.append(
                StrategyChoice(name, True, "chunks are checked and written through the manager")
            )
    return Plan("restore", backend.name, tuple(choices))


_COMPLETES = {
    "backup": (
        (IPushToObjectStore, IStreamOut),
        "push-to-object-store (offload), snapshot + stream-out (snapshot-stream)"
        " or stream-out (direct-stream)",
    ),
    "restore": (
        (IPullFromObjectStore, IStreamIn),
        "pull-from-object-store (offload) or stream-in (stream-in)",
    ),
}


def refuse_incomplete(backend: Backend, operations: tuple[str, ...]) -> None:
    """Refuse a backend that completes no strategy for one of `operations`.

    Checked when a backend is registered for ``backup`` and/or ``restore``;
    the `InvalidDriver` error lists the pieces that would complete one.
    """
    for op in operations:
        any_of, needs = _COMPLETES[op]
        if not any(backend.provides(i) for i in any_of):
            raise InvalidDriver(
                f"backend '{backend.name}' completes no {op} strategy: it provides"
                f" [{', '.join(backend.capability_names)}]; a driver would need {needs}"
            )


def _source_reading(source: Backend, req: ReplicateRequest) -> tuple[bool, str]:
    """Whether the source can be read safely, and how (shared by every strategy)."""
    if req.snapshot_id:
        return True, f"from snapshot '{req.snapshot_id}'"
    if not req.in_use:
        return True, "the volume is not in use"
    if source.provides(ISnapshot):
        return True, "from a temporary snapshot; the volume stays in use"
    if req.force:
        return True, "forced: the volume is read while in use (recorded)"
    return False, "the volume is in use, the source has no snapshot and force is not set"


def plan_replicate(
    source: Backend, target: Backend, store: Store | None, request: ReplicateRequest
) -> Plan:
    """The replication plan: native, stream, via-store, each with its reason."""
    readable, how = _source_reading(source, request)
    choices = []
    for name in request.strategies:
        if name == "native":
            if not source.provides(IReplicateToPeer):
                choice = StrategyChoice(
                    name, False, "the source has no replicate-to-peer", needs=("replicate-to-peer",)
                )
            elif target.spec is None:
                choice = StrategyChoice(name, False, f"backend '{target.name}' has no spec")
            elif not _accepts(source, target):
                choice = StrategyChoice(
                    name, False, f"the source cannot reach backend '{target.name}' directly"
                )
            else:
                choice = StrategyChoice(
                    name, readable, f"the source copies to the target itself, {how}"
                )
        elif name == "stream":
            lacks = [n for n, i in (("stream-out", IStreamOut),) if not source.provides(i)] + [
                n for n, i in (("stream-in", IStreamIn),) if not target.provides(i)
            ]
            if lacks:
                choice = StrategyChoice(
                    name,
                    False,
                    "needs stream-out on the source and stream-in on the target; missing "
                    + " and ".join(lacks),
                    needs=("stream-out", "stream-in"),
                )
            else:
                enhancers = ("allocated-extents",) if source.provides(IAllocatedExtents) else ()
                choice = StrategyChoice(
                    name, readable, f"bytes are copied through the manager, {how}", enhancers
                )
        else:
            choice = _via_store(source, target, store, readable, how)
        if choice.eligible is False and choice.reason.endswith(how) and not readable:
            choice = StrategyChoice(name, False, _source_reading(source, request)[1])
        choices.append(choice)
    return Plan("replicate", f"{source.name}->{target.name}", tuple(choices))


def via_store_sides(source: Backend, target: Backend) -> tuple[str | None, str | None]:
    """How each side of a via-store replication moves data.

    The source side is ``push`` (the backend writes chunks itself) or
    ``stream`` (the manager reads and stores them); the target side is
    ``pull`` or ``stream``; ``None`` where a side can do neither.
    """
    out_side = (
        "push"
        if source.provides(IPushToObjectStore)
        else "stream"
        if source.provides(IStreamOut)
        else None
    )
    in_side = (
        "pull"
        if target.provides(IPullFromObjectStore)
        else "stream"
        if target.provides(IStreamIn)
        else None
    )
    return out_side, in_side


def _via_store(
    source: Backend, target: Backend, store: Store | None, readable: bool, how: str
) -> StrategyChoice:
    name = "via-store"
    out_side, in_side = via_store_sides(source, target)
    if out_side is None or in_side is None:
        return StrategyChoice(
            name,
            False,
            "needs push-to-object-store or stream-out on the source and"
            " pull-from-object-store or stream-in on the target",
            needs=("push-to-object-store", "pull-from-object-store"),
        )
    if store is None:
        return StrategyChoice(name, False, "no store was given to stage the chunks in")
    refusal = (store.handoff_refusal(source) if out_side == "push" else None) or (
        store.handoff_refusal(target) if in_side == "pull" else None
    )
    if refusal is not None:
        return StrategyChoice(name, False, refusal)
    sides = {
        ("push", "pull"): "the source pushes and the target pulls; no byte crosses the manager",
        ("push", "stream"): "the source pushes; the manager restores into the target",
        ("stream", "pull"): "the manager stores the source's chunks; the target pulls them",
        ("stream", "stream"): "the manager stores the chunks and restores them",
    }[(out_side, in_side)]
    return StrategyChoice(name, readable, f"staged in store '{store.name}': {sides}, {how}")


def _accepts(source: Backend, target: Backend) -> bool:
    replicator = source.use(IReplicateToPeer)
    assert target.spec is not None
    return bool(replicator.accepts_peer(target.spec))
