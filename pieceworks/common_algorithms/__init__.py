"""Common algorithms: backup, restore, verify and delete built from capabilities.

A template reads which capabilities a backend's driver provides, makes a
`Plan` (strategies in order, each eligible or not, with the reason), and
builds a TaskFlow flow that runs the first eligible strategy and falls back
to the next when one fails. `register_backend` puts those flows in the
registry under tags (``live-backup``, ``fast-backup``, ...).
"""

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
