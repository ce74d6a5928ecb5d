"""Backend pieces for the registry: request values at build time or from the store.

A backup, restore, replicate or verify piece built from the registry has
the same steps as the template's flow (``backup_flow``...), with three
differences a manager composing it relies on:

- **Request values from build time or from the engine's store.** Each
  request field given to the factory is fixed (injected into the piece's
  first atom); each one left out is read from the engine's store under its
  own name (``volume_id``, ``in_use``, ``backup_id``...): required if the
  request has no default for it, optional otherwise. The first atom,
  ``<ns>.request``, turns them into a request and its plan (both persisted,
  so a resumed run uses the same ones, and an id drawn at run time, such as
  a new backup id, stays the same).
- **Names per piece, not per request.** Every atom is named
  ``<ns>.<step>`` and every symbol it provides ``<ns>.<symbol>``, where the
  namespace `ns` is the registration's name (``lab.backup``) unless the
  ``namespace`` build argument says otherwise. Names do not depend on
  request values, so the flow's shape is known when it is composed (and
  rebuilt identically by a conductor).
- **A stable result symbol with the plan.** ``<ns>.result`` holds the
  template's result (strategy, failed strategies, figures) plus ``plan``:
  the plan's JSON form, every strategy with the reason it was or was not
  eligible.

The template tasks are reused as they are: each runs inside an atom that
builds it from the request found in the store (`OnRequest`), renaming the
template's atom and symbols into the piece's namespace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

from taskflow import retry, task
from taskflow.patterns import linear_flow

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.operations.backup_tasks import (
    PrepareSource,
    ReleaseLease,
    ReleaseSource,
    TakeLease,
    TransferChunks,
    WriteManifest,
)
from pieceworks.common_algorithms.operations.fallback import StrategyFallback
from pieceworks.common_algorithms.operations.plan import Plan
from pieceworks.common_algorithms.operations.planning import (
    plan_backup,
    plan_replicate,
    plan_restore,
)
from pieceworks.common_algorithms.operations.replicate import (
    CheckReplicaTarget,
    CopyVolume,
    PrepareReplicaSource,
    ReleaseReplicaSource,
)
from pieceworks.common_algorithms.operations.requests import (
    BackupRequest,
    ReplicateRequest,
    RestoreRequest,
    new_backup_id,
    new_operation_id,
)
from pieceworks.common_algorithms.operations.restore import CheckBackup, RestoreVolume
from pieceworks.common_algorithms.operations.verify import VerifyBackup
from pieceworks.protocols import PieceworksError

__all__ = [
    "REQUEST_FIELDS",
    "RESULT",
    "OnRequest",
    "PlannedFallback",
    "backup_piece",
    "feasibility",
    "replicate_piece",
    "restore_piece",
    "verify_piece",
]

#: The symbol suffix every piece provides its result under: ``<ns>.result``.
RESULT: Final = "result"

_Req = TypeVar("_Req", BackupRequest, RestoreRequest, ReplicateRequest)

#: The request fields each operation's piece takes (at build time or from the store).
REQUEST_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "backup": tuple(f.name for f in dataclasses.fields(BackupRequest)),
    "restore": tuple(f.name for f in dataclasses.fields(RestoreRequest)),
    "replicate": tuple(f.name for f in dataclasses.fields(ReplicateRequest)),
    "verify": ("backup_id",),
}


def _request_dict(request: BackupRequest | RestoreRequest | ReplicateRequest) -> dict[str, Any]:
    out = dataclasses.asdict(request)
    out["strategies"] = list(request.strategies)
    return out


def _request_from(kind: type[_Req], row: Mapping[str, Any]) -> _Req:
    fields = dict(row)
    fields["strategies"] = tuple(fields.get("strategies") or ())
    return kind(**fields)


def _eligible(plan: Mapping[str, Any]) -> list[str]:
    return [str(s["name"]) for s in plan["strategies"] if s["eligible"]]


class _Resolve(task.Task):
    """Common part of the first atom of a piece: request and plan from the store."""

    def __init__(self, ns: str, fixed: Mapping[str, object]) -> None:
        super().__init__(
            name=f"{ns}.request",
            provides=(f"{ns}.request", f"{ns}.plan"),
            inject=dict(fixed) or None,
        )

    @staticmethod
    def _answer(
        request: BackupRequest | RestoreRequest | ReplicateRequest, plan: Plan
    ) -> tuple[dict[str, Any], dict[str, object]]:
        return _request_dict(request), plan.require_eligible().to_dict()


class ResolveBackup(_Resolve):
    """The backup request from build-time values and the store, and its plan."""

    def __init__(self, backend: Backend, store: Store, ns: str, fixed: Mapping[str, object]):
        super().__init__(ns, fixed)
        self.backend, self.store = backend, store

    def execute(
        self,
        volume_id: str,
        backup_id: str | None = None,
        in_use: bool = False,
        force: bool = False,
        incremental: bool = False,
        codec: str | None = None,
        chunk_size: int | None = None,
        strategies: Sequence[str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, object]]:
        given: dict[str, Any] = {"codec": codec, "chunk_size": chunk_size}
        request = BackupRequest(
            volume_id=volume_id,
            backup_id=backup_id or new_backup_id(),
            in_use=bool(in_use),
            force=bool(force),
            incremental=bool(incremental),
            strategies=tuple(strategies or ()),
            **{k: v for k, v in given.items() if v is not None},
        )
        return self._answer(request, plan_backup(self.backend, self.store, request))


class ResolveRestore(_Resolve):
    """The restore request from build-time values and the store, and its plan."""

    def __init__(self, backend: Backend, store: Store, ns: str, fixed: Mapping[str, object]):
        super().__init__(ns, fixed)
        self.backend, self.store = backend, store

    def execute(
        self,
        backup_id: str,
        volume_id: str,
        strategies: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> tuple[dict[str, Any], dict[str, object]]:
        request = RestoreRequest(
            backup_id, volume_id, overwrite=bool(overwrite), **_strategies(strategies)
        )
        return self._answer(request, plan_restore(self.backend, self.store, request))


class ResolveReplicate(_Resolve):
    """The replicate request from build-time values and the store, and its plan."""

    def __init__(
        self,
        source: Backend,
        target: Backend,
        store: Store | None,
        ns: str,
        fixed: Mapping[str, object],
    ) -> None:
        super().__init__(ns, fixed)
        self.source, self.target, self.store = source, target, store

    def execute(
        self,
        volume_id: str,
        target_volume_id: str | None = None,
        snapshot_id: str | None = None,
        in_use: bool = False,
        force: bool = False,
        chunk_size: int | None = None,
        strategies: Sequence[str] | None = None,
        operation_id: str | None = None,
        overwrite: bool = False,
    ) -> tuple[dict[str, Any], dict[str, object]]:
        extra: dict[str, Any] = _strategies(strategies)
        if chunk_size is not None:
            extra["chunk_size"] = chunk_size
        request = ReplicateRequest(
            volume_id,
            target_volume_id=target_volume_id,
            snapshot_id=snapshot_id,
            in_use=bool(in_use),
            force=bool(force),
            operation_id=operation_id or new_operation_id(),
            overwrite=bool(overwrite),
            **extra,
        )
        plan = plan_replicate(self.source, self.target, self.store, request)
        return self._answer(request, plan)


def _strategies(strategies: Sequence[str] | None) -> dict[str, Any]:
    return {"strategies": tuple(strategies)} if strategies else {}


class PlannedFallback(retry.Retry):
    """`StrategyFallback` over the eligible strategies of a plan found in the store.

    Provides the same attempt mapping; the plan is the JSON form the
    piece's first atom stored under ``<ns>.plan``.
    """

    def __init__(self, name: str, provides: str, plan: str) -> None:
        super().__init__(name=name, provides=provides, requires=["plan"], rebind={"plan": plan})

    def _fallback(self, kwargs: Mapping[str, Any]) -> StrategyFallback:
        return StrategyFallback(_eligible(kwargs["plan"]), name=self.name or "", provides="")

    def execute(self, history: retry.History, *args: Any, **kwargs: Any) -> dict[str, object]:
        return self._fallback(kwargs).execute(history)

    def on_failure(self, history: retry.History, *args: Any, **kwargs: Any) -> retry.Decision:
        return self._fallback(kwargs).on_failure(history)

    def revert(self, history: retry.History, *args: Any, **kwargs: Any) -> None:
        """Nothing to undo: choosing a strategy changes nothing."""


class OnRequest(task.Task, Generic[_Req]):
    """Run a template task built from the request the piece's first atom stored.

    `make` builds the template task for a request; it is called once with
    `placeholder` to learn the task's step name, arguments and provided
    symbol, which are renamed from the template's prefix into `ns`. With
    `plan` set, the task's result (a mapping) gains ``plan``.
    """

    def __init__(
        self,
        make: Callable[[_Req], task.Task],
        placeholder: _Req,
        ns: str,
        *,
        with_plan: bool = False,
    ) -> None:
        template = make(placeholder)
        prefix, _, step = (template.name or "").rpartition(".")

        def rename(symbol: str) -> str:
            return ns + symbol[len(prefix) :] if symbol.startswith(prefix + ".") else symbol

        rebind = {arg: rename(sym) for arg, sym in template.rebind.items()}
        rebind["request"] = f"{ns}.request"
        if with_plan:
            rebind["plan"] = f"{ns}.plan"
        provided = [rename(s) for s in template.save_as]
        super().__init__(
            name=f"{ns}.{step}",
            provides=provided[0] if len(provided) == 1 else (provided or None),
            requires=list(rebind),
            rebind=rebind,
        )
        self._make: Callable[[_Req], task.Task] = make
        self._kind: type[_Req] = type(placeholder)

    def _template(self, request: Mapping[str, Any]) -> task.Task:
        inner = self._make(_request_from(self._kind, request))
        # progress reported by the template task reaches this atom's listeners
        object.__setattr__(inner, "update_progress", self.update_progress)
        return inner

    def execute(self, request: Mapping[str, Any], **kwargs: Any) -> Any:
        plan = kwargs.pop("plan", None)
        result = self._template(request).execute(**kwargs)
        if plan is not None and isinstance(result, dict):
            result = {**result, "plan": plan}
        return result

    def revert(self, request: Mapping[str, Any], **kwargs: Any) -> Any:
        kwargs.pop("plan", None)
        return self._template(request).revert(**kwargs)


def backup_piece(
    backend: Backend, store: Store, ns: str, fixed: Mapping[str, object]
) -> linear_flow.Flow:
    """The backup flow of a registry piece: `fixed` request fields, the rest from the store.

    Provides ``<ns>.result`` (a backup result with ``plan``), ``<ns>.request``
    and ``<ns>.plan``; requires ``volume_id`` unless fixed.
    """
    placeholder = BackupRequest("placeholder", backup_id="placeholder")

    def on(
        cls: Callable[[Backend, Store, BackupRequest, str], task.Task], with_plan: bool = False
    ) -> OnRequest[BackupRequest]:
        return OnRequest(lambda r: cls(backend, store, r, ns), placeholder, ns, with_plan=with_plan)

    attempt = linear_flow.Flow(
        f"{ns}.strategies",
        retry=PlannedFallback(f"{ns}.fallback", f"{ns}.attempt", f"{ns}.plan"),
    ).add(on(PrepareSource), on(TransferChunks), on(ReleaseSource))
    return linear_flow.Flow(ns).add(
        ResolveBackup(backend, store, ns, fixed),
        on(TakeLease),
        attempt,
        on(WriteManifest, with_plan=True),
        on(ReleaseLease),
    )


def restore_piece(
    backend: Backend, store: Store, ns: str, fixed: Mapping[str, object]
) -> linear_flow.Flow:
    """The restore flow of a registry piece; provides ``<ns>.result`` with ``plan``."""
    placeholder = RestoreRequest("placeholder", "placeholder")
    check: OnRequest[RestoreRequest] = OnRequest(
        lambda r: CheckBackup(backend, store, r, ns), placeholder, ns
    )
    volume: OnRequest[RestoreRequest] = OnRequest(
        lambda r: RestoreVolume(backend, store, r, ns), placeholder, ns, with_plan=True
    )
    return linear_flow.Flow(ns).add(
        ResolveRestore(backend, store, ns, fixed),
        check,
        linear_flow.Flow(
            f"{ns}.strategies",
            retry=PlannedFallback(f"{ns}.fallback", f"{ns}.attempt", f"{ns}.plan"),
        ).add(volume),
    )


def replicate_piece(
    source: Backend,
    target: Backend,
    store: Store | None,
    ns: str,
    fixed: Mapping[str, object],
) -> linear_flow.Flow:
    """The replicate flow of a registry piece; provides ``<ns>.result`` with ``plan``."""
    placeholder = ReplicateRequest("placeholder", operation_id="placeholder")

    def on(
        cls: Callable[[Backend, Backend, Store | None, ReplicateRequest], task.Task],
        with_plan: bool = False,
    ) -> OnRequest[ReplicateRequest]:
        return OnRequest(
            lambda r: cls(source, target, store, r), placeholder, ns, with_plan=with_plan
        )

    return linear_flow.Flow(ns).add(
        ResolveReplicate(source, target, store, ns, fixed),
        on(CheckReplicaTarget),
        linear_flow.Flow(
            f"{ns}.strategies",
            retry=PlannedFallback(f"{ns}.fallback", f"{ns}.attempt", f"{ns}.plan"),
        ).add(
            on(PrepareReplicaSource),
            on(CopyVolume),
            on(ReleaseReplicaSource, with_plan=True),
        ),
    )


class VerifyPiece(task.Task):
    """Check every chunk of a backup (named at build time or in the store)."""

    def __init__(self, store: Store, ns: str, fixed: Mapping[str, object]) -> None:
        super().__init__(name=f"{ns}.verify", provides=f"{ns}.{RESULT}", inject=dict(fixed) or None)
        self.store = store

    def execute(self, backup_id: str) -> dict[str, Any]:
        inner = VerifyBackup(self.store, backup_id)
        object.__setattr__(inner, "update_progress", self.update_progress)
        return inner.execute()


def verify_piece(store: Store, ns: str, fixed: Mapping[str, object]) -> linear_flow.Flow:
    """The verify flow of a registry piece; provides ``<ns>.result``."""
    return linear_flow.Flow(ns).add(VerifyPiece(store, ns, fixed))


def feasibility(
    operation: str, plan_for: Callable[[Mapping[str, Any]], Plan | None]
) -> Callable[[Mapping[str, object]], str | None]:
    """A `Feasibility` check: why the piece cannot run for given build arguments.

    `plan_for` plans the request the arguments describe (filling absent
    required ids with a placeholder: planning reads capabilities, not
    volumes). Arguments that make no valid request are a reason too.
    """

    def check(args: Mapping[str, object]) -> str | None:
        try:
            plan = plan_for(args)
        except (PieceworksError, TypeError, ValueError) as exc:
            return f"invalid {operation} request: {exc}"
        if plan is None or plan.eligible:
            return None
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in plan.strategies)
        return f"no {operation} strategy can run on backend '{plan.backend}': {reasons}"

    return check
