"""The founding example: a manager composes a backup from pieces it does not know.

From the blueprint "Task & flow attributes": the manager asks the registry
for tasks/flows providing ``['fast-backup', 'slow-backup', 'live-backup']``,
inserts what comes back into its own larger flow next to tasks of its own,
and runs it with a TaskFlow engine; asking for something nobody registered
raises `NotFound`.

Run: ``python examples/founding_manager.py`` (``make demo`` runs the full demo).
"""

from __future__ import annotations

import os
import sys
import tempfile

from taskflow import engines, task
from taskflow.patterns import linear_flow

from pieceworks.common_algorithms import Backend, Store, register_backend
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import StoreSpec, VolumeRef
from pieceworks.registry import NotFound, Registry


class ReserveQuota(task.Task):
    """The manager's own task: check the tenant may store another backup."""

    def execute(self, volume_id: str) -> None:
        print(f"manager: quota reserved for a backup of {volume_id}")


class NotifyOwner(task.Task):
    """The manager's own task: tell the owner what the backup cost."""

    def execute(self, result: dict[str, object]) -> None:
        print(
            f"manager: backup {result['backup_id']} done by {result['strategy']},"
            f" {result['bytes_stored']} bytes stored"
        )


def deploy(workdir: str) -> Registry:
    """What a deployment does once: register its configured backends (driver-specific)."""
    volumes, backups = os.path.join(workdir, "volumes"), os.path.join(workdir, "backups")
    os.makedirs(volumes, exist_ok=True)
    driver = FileDriver(volumes)
    driver.write_volume(VolumeRef("vol-1"), os.urandom(1 << 20) + bytes(3 << 20))
    registry = Registry()
    store = Store("backups", PosixStore(backups), StoreSpec("backups", "posix", {"path": backups}))
    register_backend(registry, Backend.of("lab", driver), store)
    return registry


def manager(registry: Registry, backend: str, volume_id: str) -> dict[str, object]:
    """The manager: knows attributes, not drivers.

    It asks for pieces that can be built for its request (a volume in use),
    reads what the piece needs and gives (`describe`), builds it with the
    fixed part of the request, and passes the volume through the engine's
    store, where its own task reads it too.
    """
    request = {"in_use": True, "backup_id": "bk-1"}
    found = registry.find_one(
        any_of=["fast-backup", "slow-backup", "live-backup"],
        backend=backend,
        buildable=True,
        request=request,
    )
    about = found.describe(**request)
    print(f"manager: found {about.name}: {about.summary}")
    print(f"manager: it needs {list(about.requires or ())} from the store")
    result = f"{found.name}.result"  # the piece's stable result symbol
    flow = linear_flow.Flow("create-backup").add(
        ReserveQuota(), found.build(**request), NotifyOwner(rebind={"result": result})
    )
    results = engines.run(flow, store={"volume_id": volume_id})
    outcome: dict[str, object] = results[result]
    return outcome


def main() -> int:
    with tempfile.TemporaryDirectory() as workdir:
        registry = deploy(workdir)
        outcome = manager(registry, "lab", "vol-1")
        assert outcome["strategy"] == "snapshot-stream"
        try:
            registry.find(["replicate"], backend="lab")
        except NotFound as exc:
            print(f"manager: no replication here: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
