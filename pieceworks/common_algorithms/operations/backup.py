"""The backup template: plan from capabilities, build the flow, run it.

    backend = Backend.of("lab", FileDriver("/srv/volumes"))
    store = Store("lab", PosixStore("/srv/backups"))
    outcome = backup(backend, store, BackupRequest("vol-1", in_use=True))
    outcome.strategy   # "snapshot-stream"

The flow (all TaskFlow): take the store lease; then, under `StrategyFallback`,
prepare the source, transfer chunks, release the source; a failure reverts
that subflow (its temporary snapshot is deleted) and the next eligible
strategy runs. Last, the manifest is written and the lease released.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskflow.patterns import linear_flow

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.gc.leases import (
    forget_temporary,
    own_lease_token,
    release_lease,
    temporary_entries,
)
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.common_algorithms.operations.backup_tasks import (
    PrepareSource,
    ReleaseLease,
    ReleaseSource,
    TakeLease,
    TransferChunks,
    WriteManifest,
)
from pieceworks.common_algorithms.operations.fallback import StrategyFallback
from pieceworks.common_algorithms.operations.guard import GuardReport
from pieceworks.common_algorithms.operations.plan import Attempt, Plan
from pieceworks.common_algorithms.operations.planning import plan_backup
from pieceworks.common_algorithms.operations.requests import BackupRequest
from pieceworks.common_algorithms.runner import EngineOptions, ProgressCallback, run_flow
from pieceworks.protocols import ISnapshot, SnapshotRef

__all__ = ["BackupOutcome", "abandon_backup", "backup", "backup_flow"]


def _prefix(request: BackupRequest) -> str:
    return f"backup-{request.backup_id}"


def backup_flow(
    backend: Backend, store: Store, request: BackupRequest, plan: Plan | None = None
) -> linear_flow.Flow:
    """The TaskFlow flow that carries out `request` by `plan` (computed if not given).

    Raise `NoEligibleStrategy` when no strategy can run. The flow provides
    ``backup-<id>.result``, a JSON-able summary (see `BackupOutcome`).
    Add it to a larger flow as any other flow.
    """
    plan = (plan or plan_backup(backend, store, request)).require_eligible()
    p = _prefix(request)
    attempt = linear_flow.Flow(
        f"{p}.strategies",
        retry=StrategyFallback(plan.eligible, name=f"{p}.fallback", provides=f"{p}.attempt"),
    ).add(
        PrepareSource(backend, store, request, p),
        TransferChunks(backend, store, request, p),
        ReleaseSource(backend, store, request, p),
    )
    return linear_flow.Flow(p).add(
        TakeLease(backend, store, request, p),
        attempt,
        WriteManifest(backend, store, request, p, plan),
        ReleaseLease(backend, store, request, p),
    )


@dataclass(frozen=True)
class BackupOutcome:
    """What a backup produced and how.

    `strategy` produced the backup; `failed` lists the strategies tried
    before it, each with its error; `plan` is the plan it followed.
    `enhancers_used` maps each enhancer its reads went through
    (``changed-blocks``, ``allocated-extents``) to the bytes it let the
    backup skip; `guard` is what the sampling guard checked and found
    (None when the strategy read nothing through pieceworks: offload).
    """

    backup_id: str
    volume_id: str
    backend: str
    store: str
    strategy: str
    failed: tuple[Attempt, ...]
    plan: Plan
    size: int
    bytes_read: int
    bytes_stored: int
    bytes_through_manager: int
    chunks_total: int
    chunks_new: int
    holes: int
    incremental: bool
    parent: str | None
    seconds: float
    enhancers_used: Mapping[str, int] = field(default_factory=dict)
    guard: GuardReport | None = None
    notes: tuple[str, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the user must be told, as sentences: each lie the guard caught, then the
        `notes` of the transfer (change tracking lost or not recorded)."""
        lies = tuple(lie.message() for lie in self.guard.lies) if self.guard else ()
        return lies + self.notes

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``pieceworks backup --json``.

        ``parent_id`` is the parent backup's id (None for a full backup);
        ``parent`` is its deprecated old name (`pieceworks.common_algorithms.json_fields`).
        """
        doc = {
            "backup_id": self.backup_id,
            "volume_id": self.volume_id,
            "backend": self.backend,
            "store": self.store,
            "strategy": self.strategy,
            "failed_strategies": [a.to_dict() for a in self.failed],
            "size": self.size,
            "bytes_read": self.bytes_read,
            "bytes_stored": self.bytes_stored,
            "bytes_through_manager": self.bytes_through_manager,
            "chunks_total": self.chunks_total,
            "chunks_new": self.chunks_new,
            "holes": self.holes,
            "incremental": self.incremental,
            "parent_id": self.parent,
            "seconds": round(self.seconds, 3),
            "plan": self.plan.to_dict(),
            "enhancers_used": {
                name: {"bytes_skipped": n} for name, n in self.enhancers_used.items()
            },
            "guard": None if self.guard is None else self.guard.to_dict(),
            "warnings": list(self.warnings),
        }
        return with_deprecated("backup", doc)


def backup(
    backend: Backend,
    store: Store,
    request: BackupRequest,
    *,
    options: EngineOptions | None = None,
    progress: ProgressCallback | None = None,
) -> BackupOutcome:
    """Back up `request.volume_id` from `backend` into `store`.

    Raise `NoEligibleStrategy` if no strategy can run, `AllStrategiesFailed`
    if every eligible one failed (each reverted: no snapshot left, no
    manifest written), or the error itself for an unknown volume.
    """
    started = time.monotonic()
    plan = plan_backup(backend, store, request)
    flow = backup_flow(backend, store, request, plan)
    p = _prefix(request)
    result = run_flow(
        flow,
        operation="backup",
        backend=backend.name,
        prefix=p,
        options=options,
        progress=progress,
    )
    return BackupOutcome(
        backup_id=result["backup_id"],
        volume_id=result["volume_id"],
        backend=result["backend"],
        store=result["store"],
        strategy=result["strategy"],
        failed=Attempt.from_rows(result["failed_strategies"]),
        plan=plan,
        size=result["size"],
        bytes_read=result["bytes_read"],
        bytes_stored=result["bytes_stored"],
        bytes_through_manager=result["bytes_through_manager"],
        chunks_total=result["chunks_total"],
        chunks_new=result["chunks_new"],
        holes=result["holes"],
        incremental=result["incremental"],
        parent=result["parent"],
        seconds=time.monotonic() - started,
        enhancers_used=dict(result.get("enhancers_used") or {}),
        guard=GuardReport.from_dict(result["guard"]) if result.get("guard") else None,
        notes=tuple(str(n) for n in result.get("notes") or ()),
    )


def abandon_backup(backend: Backend, store: Store, request: BackupRequest, plan: Plan) -> None:
    """Undo what an interrupted backup of this process left behind; safe to call again.

    TaskFlow reverts a flow whose task fails, but a ``KeyboardInterrupt``
    unwinds through the engine and nothing is reverted. This runs the
    reverts the engine could not, for this process's run only (the lease
    names its owner, the journal ``runs/<token>`` the temporary snapshots it
    took): each journaled snapshot on `backend` is deleted, then the lease
    is released. Every step is attempted; the first error is raised at the
    end. No manifest needs undoing: it is written last, so the backup exists
    whole or not at all. `plan` is accepted for callers that have it.
    """
    del plan
    token = own_lease_token(store.objects, request.backup_id)
    if token is None:
        return  # no lease of ours: the run never started, or it has cleaned up
    errors: list[Exception] = []
    for entry in temporary_entries(store.objects, token):
        if entry.get("backend") != backend.name:
            continue
        try:
            backend.use(ISnapshot).delete_snapshot(
                SnapshotRef(entry["volume_id"], entry["snapshot_id"])
            )
            forget_temporary(store.objects, token, entry)
        except Exception as exc:  # keep cleaning; report the first
            errors.append(exc)
    try:
        release_lease(store.objects, request.backup_id, token)
    except Exception as exc:
        errors.append(exc)
    if errors:
        raise errors[0]
