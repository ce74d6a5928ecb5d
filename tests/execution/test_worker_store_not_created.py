"""A worker never creates a store (real worker process, real RabbitMQ).

A worker whose host configuration names a store that does not exist there
(a misspelt path, or a path that is not shared with the conductor's host)
used to create it, empty, and write a backup's chunks into it while the
conductor wrote the manifest into the real store. It now declines the step
(`NotServedHere`), the conductor runs it in process, and nothing is created
on the worker's side.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pieceworks.common_algorithms.operations.backup_tasks import BackupTransfer
from pieceworks.common_algorithms.operations.requests import BackupRequest, request_fields
from pieceworks.common_algorithms.placement import NotPlaced
from pieceworks.execution.dispatch import WorkerDispatcher
from tests.execution.support import CHUNK, Board, make_volume
from tests.execution.test_workers import TRANSPORT, host_config, start_worker


def test_a_worker_declines_a_step_on_a_store_it_does_not_have(board: Board, tmp_path: Path) -> None:
    make_volume(tmp_path / "volumes", "vol-1", 4)
    start_worker(board, "worker-1", host_config(board, tmp_path))
    seen: list[dict[str, object]] = []
    dispatcher = WorkerDispatcher(TRANSPORT, exchange=board.namespace, on_event=seen.append)
    arguments = {
        "backend": "lab",
        "store": "lab",
        "request": request_fields(BackupRequest("vol-1", chunk_size=CHUNK)),
        "attempt": {"strategy": "direct-stream"},
        "source": {"volume_id": "vol-1", "snapshot_id": None},
    }
    name = "backup-probe.transfer-chunks"
    with pytest.raises(NotPlaced, match=r"declined .*store 'lab'.* does not exist"):
        dispatcher.run(BackupTransfer, name, "lab", arguments, BackupTransfer(name="probe"))
    assert [e["event"] for e in seen] == ["placed", "in-process"], seen
    assert not (tmp_path / "store").exists()
