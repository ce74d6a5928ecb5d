"""Common algorithms: backup, restore, verify and delete built from capabilities.

A template reads which capabilities a backend's driver provides, makes a
`Plan` (strategies in order, each eligible or not, with the reason), and
builds a TaskFlow flow that runs the first eligible strategy and falls back
to the next when one fails. `register_backend` puts those flows in the
registry under tags (``live-backup``, ``fast-backup``, ...).

The public names below are imported on first use (PEP 562 ``__getattr__``):
importing a light submodule such as `pieceworks.common_algorithms.format.manifest`
(``pieceworks list``) must not import TaskFlow, SQLAlchemy and networkx,
which the flow modules bring in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pieceworks.common_algorithms import _lazy_taskflow

_lazy_taskflow.defer()  # before any submodule imports TaskFlow

if TYPE_CHECKING:
    from pieceworks.common_algorithms.backend import Backend, Store
    from pieceworks.common_algorithms.operations.backup import BackupOutcome, backup, backup_flow
    from pieceworks.common_algorithms.operations.delete import DeleteOutcome, delete, delete_flow
    from pieceworks.common_algorithms.operations.plan import (
        AllStrategiesFailed,
        Attempt,
        NoEligibleStrategy,
        Plan,
        StrategyChoice,
    )
    from pieceworks.common_algorithms.operations.planning import (
        plan_backup,
        plan_replicate,
        plan_restore,
    )
    from pieceworks.common_algorithms.operations.registration import (
        backend_tags,
        register_backend,
        register_replication,
        replication_tags,
    )
    from pieceworks.common_algorithms.operations.replicate import (
        ReplicateOutcome,
        replicate,
        replicate_flow,
    )
    from pieceworks.common_algorithms.operations.requests import (
        BACKUP_STRATEGIES,
        REPLICATE_STRATEGIES,
        RESTORE_STRATEGIES,
        BackupRequest,
        ReplicateRequest,
        RestoreRequest,
    )
    from pieceworks.common_algorithms.operations.restore import (
        RestoreOutcome,
        restore,
        restore_flow,
    )
    from pieceworks.common_algorithms.operations.verify import VerifyOutcome, verify, verify_flow
    from pieceworks.common_algorithms.runner import EngineOptions, ProgressEvent

#: Public name -> the submodule that defines it.
_WHERE = {
    "Backend": "backend",
    "Store": "backend",
    "BackupOutcome": "operations.backup",
    "backup": "operations.backup",
    "backup_flow": "operations.backup",
    "DeleteOutcome": "operations.delete",
    "delete": "operations.delete",
    "delete_flow": "operations.delete",
    "AllStrategiesFailed": "operations.plan",
    "Attempt": "operations.plan",
    "NoEligibleStrategy": "operations.plan",
    "Plan": "operations.plan",
    "StrategyChoice": "operations.plan",
    "plan_backup": "operations.planning",
    "plan_replicate": "operations.planning",
    "plan_restore": "operations.planning",
    "backend_tags": "operations.registration",
    "register_backend": "operations.registration",
    "register_replication": "operations.registration",
    "replication_tags": "operations.registration",
    "ReplicateOutcome": "operations.replicate",
    "replicate": "operations.replicate",
    "replicate_flow": "operations.replicate",
    "BACKUP_STRATEGIES": "operations.requests",
    "REPLICATE_STRATEGIES": "operations.requests",
    "RESTORE_STRATEGIES": "operations.requests",
    "BackupRequest": "operations.requests",
    "ReplicateRequest": "operations.requests",
    "RestoreRequest": "operations.requests",
    "RestoreOutcome": "operations.restore",
    "restore": "operations.restore",
    "restore_flow": "operations.restore",
    "EngineOptions": "runner",
    "ProgressEvent": "runner",
    "VerifyOutcome": "operations.verify",
    "verify": "operations.verify",
    "verify_flow": "operations.verify",
}


def __getattr__(name: str) -> Any:
    """Import the submodule defining `name` on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "BACKUP_STRATEGIES",
    "REPLICATE_STRATEGIES",
    "RESTORE_STRATEGIES",
    "AllStrategiesFailed",
    "Attempt",
    "Backend",
    "BackupOutcome",
    "BackupRequest",
    "DeleteOutcome",
    "EngineOptions",
    "NoEligibleStrategy",
    "Plan",
    "ProgressEvent",
    "ReplicateOutcome",
    "ReplicateRequest",
    "RestoreOutcome",
    "RestoreRequest",
    "Store",
    "StrategyChoice",
    "VerifyOutcome",
    "backend_tags",
    "backup",
    "backup_flow",
    "delete",
    "delete_flow",
    "plan_backup",
    "plan_replicate",
    "plan_restore",
    "register_backend",
    "register_replication",
    "replicate",
    "replicate_flow",
    "replication_tags",
    "restore",
    "restore_flow",
    "verify",
    "verify_flow",
]
