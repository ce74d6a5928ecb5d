"""Common algorithms: backup, restore, verify and delete built from capabilities.

A template reads which capabilities a backend's driver provides, makes a
`Plan` (strategies in order, each eligible or not, with the reason), and
builds a TaskFlow flow that runs the first eligible strategy and falls back
to the next when one fails. `register_backend` puts those flows in the
registry under tags (``live-backup``, ``fast-backup``, ...).

The public names below are imported on first use (PEP 562 ``__getattr__``):
importing a light submodule such as `pieceworks.common_algorithms.manifest`
(``pieceworks list``) must not import TaskFlow, SQLAlchemy and networkx,
which the flow modules bring in.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from pieceworks.common_algorithms import _lazy_taskflow

_lazy_taskflow.defer()  # before any submodule imports TaskFlow

if TYPE_CHECKING:
    from pieceworks.common_algorithms.backend import Backend, Store
    from pieceworks.common_algorithms.backup import BackupOutcome, backup, backup_flow
    from pieceworks.common_algorithms.delete import DeleteOutcome, delete, delete_flow
    from pieceworks.common_algorithms.plan import (
        AllStrategiesFailed,
        Attempt,
        NoEligibleStrategy,
        Plan,
        StrategyChoice,
    )
    from pieceworks.common_algorithms.planning import plan_backup, plan_replicate, plan_restore
    from pieceworks.common_algorithms.registration import (
        backend_tags,
        register_backend,
        register_replication,
        replication_tags,
    )
    from pieceworks.common_algorithms.replicate import ReplicateOutcome, replicate, replicate_flow
    from pieceworks.common_algorithms.requests import (
        BACKUP_STRATEGIES,
        REPLICATE_STRATEGIES,
        RESTORE_STRATEGIES,
        BackupRequest,
        ReplicateRequest,
        RestoreRequest,
    )
    from pieceworks.common_algorithms.restore import RestoreOutcome, restore, restore_flow
    from pieceworks.common_algorithms.runner import EngineOptions, ProgressEvent
    from pieceworks.common_algorithms.verify import VerifyOutcome, verify, verify_flow

#: Public name -> the submodule that defines it.
_WHERE = {
    "Backend": "backend",
    "Store": "backend",
    "BackupOutcome": "backup",
    "backup": "backup",
    "backup_flow": "backup",
    "DeleteOutcome": "delete",
    "delete": "delete",
    "delete_flow": "delete",
    "AllStrategiesFailed": "plan",
    "Attempt": "plan",
    "NoEligibleStrategy": "plan",
    "Plan": "plan",
    "StrategyChoice": "plan",
    "plan_backup": "planning",
    "plan_replicate": "planning",
    "plan_restore": "planning",
    "backend_tags": "registration",
    "register_backend": "registration",
    "register_replication": "registration",
    "replication_tags": "registration",
    "ReplicateOutcome": "replicate",
    "replicate": "replicate",
    "replicate_flow": "replicate",
    "BACKUP_STRATEGIES": "requests",
    "REPLICATE_STRATEGIES": "requests",
    "RESTORE_STRATEGIES": "requests",
    "BackupRequest": "requests",
    "ReplicateRequest": "requests",
    "RestoreRequest": "requests",
    "RestoreOutcome": "restore",
    "restore": "restore",
    "restore_flow": "restore",
    "EngineOptions": "runner",
    "ProgressEvent": "runner",
    "VerifyOutcome": "verify",
    "verify": "verify",
    "verify_flow": "verify",
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


#: Functions named like the submodule that defines them (``backup`` in ``backup``).
_SHADOWED = frozenset(name for name, module in _WHERE.items() if name == module)


class _Package(types.ModuleType):
    """This package, keeping ``backup`` (and the like) the function, not the submodule.

    Importing a submodule sets it as an attribute of its package; eagerly
    importing the function afterwards used to rebind the name. Here the
    submodule is not bound (it stays in ``sys.modules``), so that
    ``from pieceworks.common_algorithms import backup`` is the function,
    whatever was imported first.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
