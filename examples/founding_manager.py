"""The founding example: a manager composes a backup from pieces it does not know.

From the blueprint "Task & flow attributes": the manager asks the registry
for tasks/flows providing ``['fast-backup', 'slow-backup', 'live-backup']``,
inserts what comes back into its own larger flow next to tasks of its own
(reserve quota before, update its record after), and runs it with a
TaskFlow engine; asking for something nobody registered raises `NotFound`.

The same composition can be posted as a job that any conductor runs and
resumes (`pieceworks.execution.composed.post_composed`): the manager's tasks
are module-level classes, found again by import path.

Run: ``python examples/founding_manager.py`` (``make demo`` runs the full demo).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

from taskflow import engines, task

from pieceworks.common_algorithms import Backend, Store, register_backend
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import StoreSpec, VolumeRef
from pieceworks.registry import Composition, NotFound, Registry

#: What the manager asks for, by attribute only.
WANTED = ["fast-backup", "slow-backup", "live-backup"]


class ReserveQuota(task.Task):
    """The manager's own task: reserve the tenant's quota for one more backup.

    :param ledger: a file each reservation is appended to (one JSON line)
    """

    def __init__(self, ledger: str | None = None, **atom: Any) -> None:
        super().__init__(name="reserve-quota", **atom)
        self.ledger = ledger

    def execute(self, volume_id: str) -> None:
        print(f"manager: quota reserved for a backup of {volume_id}")
        if self.ledger:
            with open(self.ledger, "a", encoding="utf-8") as f:
                f.write(json.dumps({"volume_id": volume_id, "pid": os.getpid()}) + "\n")


class UpdateRecord(task.Task):
    """The manager's own task: record the finished backup for its owner.

    :param records: a directory the record is written to, one JSON file per backup
    """

    def __init__(self, records: str | None = None, **atom: Any) -> None:
        super().__init__(name="update-record", **atom)
        self.records = records

    def execute(self, result: dict[str, Any]) -> dict[str, Any]:
        record = {k: result[k] for k in ("backup_id", "volume_id", "strategy", "bytes_stored")}
        print(
            f"manager: backup {record['backup_id']} done by {record['strategy']},"
            f" {record['bytes_stored']} bytes stored"
        )
        if self.records:
            path = os.path.join(self.records, f"{record['backup_id']}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(record, f)
        return record


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


def compose(
    registry: Registry,
    backend: str,
    *,
    backup_id: str = "bk-1",
    ledger: str | None = None,
    records: str | None = None,
) -> Composition:
    """The manager's create-backup action, composed from what the registry offers.

    It asks for pieces that can be built for its request (a volume in use),
    reads what the piece needs and gives (`describe`), and adds it between
    its own two tasks; the volume id comes through the engine's store.
    """
    request = {"in_use": True, "backup_id": backup_id}
    found = registry.find_one(any_of=WANTED, backend=backend, buildable=True, request=request)
    about = found.describe(**request)
    print(f"manager: found {about.name}: {about.summary}")
    print(f"manager: it needs {list(about.requires or ())} from the store")
    composition = Composition("create-backup")
    composition.add_task(ReserveQuota, ledger=ledger)
    composition.add_piece(found, **request)
    composition.add_task(UpdateRecord, records=records, rebind={"result": f"{found.name}.result"})
    return composition


def manager(registry: Registry, backend: str, volume_id: str) -> dict[str, object]:
    """The manager: knows attributes, not drivers; runs its action in-process."""
    composition = compose(registry, backend)
    results = engines.run(composition.flow, store={"volume_id": volume_id})
    outcome: dict[str, object] = results[f"{backend}.backup.result"]
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
