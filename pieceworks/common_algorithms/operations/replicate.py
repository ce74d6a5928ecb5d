"""The replicate template: copy a volume or snapshot to another backend.

    outcome = replicate(source, target, ReplicateRequest("vol-1", in_use=True), store=store)

Strategies, best first: ``native`` (the source copies to its peer itself:
replicate-to-peer), ``stream`` (source stream-out into target stream-in
through the manager, sparse-aware, hashed end to end) and ``via-store``
(the source pushes chunks to a store, the target pulls them: for two
wire-length backends no byte crosses the manager). The source is read from
a temporary snapshot when it is in use (or from the snapshot asked for). A
failing strategy is reverted (temporary snapshot deleted, partial target
removed) and the next one runs, as for backup. An existing target volume is
replaced only when the request says `overwrite`: otherwise the replication
is refused before anything runs.

The steps around the copy are in `replicate_steps`, the copy itself in
`replicate_copy` (their task classes are importable from here); `ReplicaCopy`
stays in this module, as a worker serves a step by its class's full name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskflow import task
from taskflow.patterns import linear_flow

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.gc.journal import LocalJournal
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.common_algorithms.operations.fallback import StrategyFallback
from pieceworks.common_algorithms.operations.plan import Attempt, Plan
from pieceworks.common_algorithms.operations.planning import plan_replicate
from pieceworks.common_algorithms.operations.replicate_copy import ReplicaCopier
from pieceworks.common_algorithms.operations.replicate_steps import (
    CheckReplicaTarget,
    PrepareReplicaSource,
    ReleaseReplicaSource,
    ReplicaTask,
    replica_prefix,
)
from pieceworks.common_algorithms.operations.requests import (
    ReplicateRequest,
    decode_request,
    request_fields,
)
from pieceworks.common_algorithms.placement import (
    DataStep,
    RemoteStep,
    declining,
    host,
    run_data_step,
)
from pieceworks.common_algorithms.runner import EngineOptions, ProgressCallback, run_flow

__all__ = [
    "BackendOpener",
    "CheckReplicaTarget",
    "CopyVolume",
    "CopyVolumeByName",
    "PrepareReplicaSource",
    "ReleaseReplicaSource",
    "ReplicaCopy",
    "ReplicateOutcome",
    "StoreOpener",
    "replicate",
    "replicate_flow",
    "replicate_request",
]


class CopyVolume(DataStep, ReplicaTask):
    """Copy the source into the target volume by the current strategy.

    The work (`copy_data`) runs on a worker that serves the source backend when
    the conductor has a dispatcher and a worker takes it (as `ReplicaCopy`;
    a worker that lacks the target or the store declines it), else in process.
    """

    STEP, PROVIDES, REQUIRES = "copy-volume", "copied", ("attempt", "source")
    #: The task whose notifier gets the progress events (a worker's `ReplicaCopy`).
    reporter: task.Task | None = None

    def execute(self, attempt: dict[str, Any], source: dict[str, str | None]) -> dict[str, Any]:
        arguments = {
            "source_backend": self.source.name,
            "target_backend": self.target.name,
            "store_name": None if self.store is None else self.store.name,
            "request": request_fields(self.request),
            "attempt": attempt,
            "source": source,
        }
        return run_data_step(
            self, ReplicaCopy, self.source.name, arguments, lambda: self.copy_data(attempt, source)
        )

    def copy_data(self, attempt: dict[str, Any], source: dict[str, str | None]) -> dict[str, Any]:
        """Copy by ``attempt["strategy"]``; the copy's result row (`ReplicaCopier.copy`)."""
        copier = ReplicaCopier(
            self.source, self.target, self.store, self.request, self.reporter or self
        )
        return copier.copy(attempt, source)


#: Turn a backend name into that backend, a store name into that store, on the host
#: where a task runs (its own configuration); `ConfigError` for a name it lacks.
BackendOpener = Callable[[str], Backend]
StoreOpener = Callable[[str], Store]


class CopyVolumeByName(CopyVolume):
    """`CopyVolume` that holds no live object: names and plain values reach it through
    `execute()`, as TaskFlow's worker-based engine requires.

    Its arguments besides ``attempt`` and ``source`` (the earlier steps'
    results) are injected: ``source_backend``, ``target_backend`` and
    ``store_name`` (names, ``store_name`` None without a store) and
    ``request`` (`ReplicateRequest`'s fields as JSON gives them). At
    execution, `open_backend` and `open_store` turn the names into objects
    from the configuration of the host it runs on; no option or secret is
    part of the task, its arguments or the persisted flow. Same name,
    provides and result as `CopyVolume`.
    """

    def __init__(
        self,
        request: ReplicateRequest,
        *,
        source: str,
        target: str,
        store: str | None,
        open_backend: BackendOpener,
        open_store: StoreOpener,
    ) -> None:
        p = replica_prefix(request)
        task.Task.__init__(
            self,
            name=f"{p}.{self.STEP}",
            provides=f"{p}.{self.PROVIDES}",
            rebind={k: f"{p}.{k}" for k in self.REQUIRES},
            inject={
                "source_backend": source,
                "target_backend": target,
                "store_name": store,
                "request": request_fields(request),
            },
        )
        self._open_backend, self._open_store = open_backend, open_store
        self.request = request
        self.local_journal = None  # the copy step journals nothing

    def execute(  # type: ignore[override]
        self,
        attempt: dict[str, Any],
        source: dict[str, str | None],
        source_backend: str,
        target_backend: str,
        store_name: str | None,
        request: Mapping[str, Any],
    ) -> dict[str, Any]:
        self.source = self._open_backend(source_backend)
        self.target = self._open_backend(target_backend)
        self.store = None if store_name is None else self._open_store(store_name)
        self.request = replicate_request(request)
        return super().execute(attempt, source)


class ReplicaCopy(RemoteStep):
    """`CopyVolume`'s work on a worker: built from its name, given names and values.

    The backends and the store are names opened from this host's
    configuration (`placement.host`); a host that lacks one declines the
    step (`NotServedHere`: the conductor runs it elsewhere). `request` holds
    `ReplicateRequest`'s fields; `attempt` and `source` are the earlier
    steps' results.
    """

    def work(  # type: ignore[override]
        self,
        source_backend: str,
        target_backend: str,
        store_name: str | None,
        request: dict[str, Any],
        attempt: dict[str, Any],
        source: dict[str, str | None],
    ) -> dict[str, Any]:
        sections = host()
        with declining():
            step = CopyVolume(
                sections.backend(source_backend),
                sections.backend(target_backend),
                None if store_name is None else sections.store(store_name),
                replicate_request(request),
            )
        step.reporter = self
        return self.observed(lambda: step.copy_data(attempt, source))


def replicate_request(fields: Mapping[str, Any], *, strict: bool = False) -> ReplicateRequest:
    """`ReplicateRequest` from its fields as JSON gives them (``strategies`` a list).

    `decode_request`: a field this version does not know is ignored (logged),
    or with `strict` (posting) a `ConfigError`; `ConfigError` for a bad value,
    `IncompatibleRequest` for a request this version cannot honour.
    """
    return decode_request(ReplicateRequest, fields, strict=strict)


def replicate_flow(
    source: Backend,
    target: Backend,
    request: ReplicateRequest,
    *,
    store: Store | None = None,
    plan: Plan | None = None,
    copy_step: CopyVolume | None = None,
    journal: LocalJournal | None = None,
) -> linear_flow.Flow:
    """The flow for `request`; provides ``replicate-<operation id>.result``.

    `copy_step` replaces the copy task (`CopyVolumeByName` for a job).
    Without a store, temporary snapshots are journaled in `journal`
    (default: `LocalJournal.default`).
    """
    plan = (plan or plan_replicate(source, target, store, request)).require_eligible()
    p = replica_prefix(request)
    args = (source, target, store, request, journal)
    return linear_flow.Flow(p).add(
        CheckReplicaTarget(*args),
        linear_flow.Flow(
            f"{p}.strategies",
            retry=StrategyFallback(plan.eligible, name=f"{p}.fallback", provides=f"{p}.attempt"),
        ).add(
            PrepareReplicaSource(*args),
            copy_step or CopyVolume(*args),
            ReleaseReplicaSource(*args),
        ),
    )


@dataclass(frozen=True)
class ReplicateOutcome:
    """What a replication did: strategy, failures before it, bytes, verification.

    `bytes_sent` is what the source backend reports it sent to its peer
    itself (native: e.g. only the changes since the last common snapshot);
    ``None`` for the strategies through the manager or a store.
    """

    operation_id: str
    source_backend: str
    target_backend: str
    volume_id: str
    snapshot_id: str | None
    target_volume_id: str
    strategy: str
    failed: tuple[Attempt, ...]
    plan: Plan
    size: int
    bytes_through_manager: int
    verified: str
    seconds: float
    replaced_size: int | None = None
    bytes_sent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``pieceworks replicate``.

        ``verification`` says how the copy was checked (or that it was not
        read back); ``verified`` is its deprecated old name
        (`pieceworks.common_algorithms.json_fields`).
        """
        doc = {
            "operation_id": self.operation_id,
            "source_backend": self.source_backend,
            "target_backend": self.target_backend,
            "volume_id": self.volume_id,
            "snapshot_id": self.snapshot_id,
            "target_volume_id": self.target_volume_id,
            "strategy": self.strategy,
            "failed_strategies": [a.to_dict() for a in self.failed],
            "size": self.size,
            "replaced_size": self.replaced_size,
            "bytes_through_manager": self.bytes_through_manager,
            "bytes_sent": self.bytes_sent,
            "verification": self.verified,
            "seconds": round(self.seconds, 3),
            "plan": self.plan.to_dict(),
        }
        return with_deprecated("replicate", doc)


def replicate(
    source: Backend,
    target: Backend,
    request: ReplicateRequest,
    *,
    store: Store | None = None,
    options: EngineOptions | None = None,
    progress: ProgressCallback | None = None,
    journal: LocalJournal | None = None,
) -> ReplicateOutcome:
    """Replicate `request.volume_id` (or its snapshot) from `source` to `target`.

    `store` is needed only for the via-store strategy; the run journal of a
    temporary snapshot goes to the store, or without one to `journal`
    (default: `LocalJournal.default`), where ``pieceworks recover`` finds
    it after a crash. Raise `VolumeExists`
    (before anything runs) if the target volume exists and
    `request.overwrite` is false, `NoEligibleStrategy`,
    `AllStrategiesFailed` (each cause listed), or the error itself for an
    unknown volume or snapshot.
    """
    started = time.monotonic()
    plan = plan_replicate(source, target, store, request)
    p = replica_prefix(request)
    result = run_flow(
        replicate_flow(source, target, request, store=store, plan=plan, journal=journal),
        operation="replicate",
        backend=f"{source.name}->{target.name}",
        prefix=p,
        options=options,
        progress=progress,
    )
    return ReplicateOutcome(
        operation_id=result["operation_id"],
        source_backend=result["source_backend"],
        target_backend=result["target_backend"],
        volume_id=result["volume_id"],
        snapshot_id=result["snapshot_id"],
        target_volume_id=result["target_volume_id"],
        strategy=result["strategy"],
        failed=Attempt.from_rows(result["failed_strategies"]),
        plan=plan,
        size=result["size"],
        bytes_through_manager=result["bytes_through_manager"],
        verified=result["verified"],
        seconds=time.monotonic() - started,
        replaced_size=result.get("replaced_size"),
        bytes_sent=result.get("bytes_sent"),
    )
