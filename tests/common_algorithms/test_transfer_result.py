"""The transfer result's chunks: the columns form, and the rows an earlier version persisted."""

from __future__ import annotations

import json
from typing import Any

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.common_algorithms.gc.leases import acquire_lease
from pieceworks.common_algorithms.operations.backup_tasks import (
    ROWS,
    TransferChunks,
    WriteManifest,
)
from pieceworks.common_algorithms.operations.requests import BackupRequest
from pieceworks.protocols.chunk_list import chunk_list_from_json
from pieceworks.protocols.values import chunks_to_json
from tests.common_algorithms.conftest import CHUNK, mixed_data, put_volume


def _transfer(backend: Backend, store: Store, backup_id: str) -> dict[str, Any]:
    request = BackupRequest("vol-1", chunk_size=CHUNK, backup_id=backup_id)
    step = TransferChunks(backend, store, request, f"backup-{backup_id}")
    lease = acquire_lease(store.objects, backup_id)
    source: dict[str, str | None] = {"volume_id": "vol-1", "snapshot_id": None}
    out = step.execute({"strategy": "direct-stream"}, source, {"token": lease.token})
    return {**out, "_token": lease.token}  # the lease WriteManifest renews (taken out there)


def _write(backend: Backend, store: Store, backup_id: str, transfer: dict[str, Any]) -> None:
    request = BackupRequest("vol-1", chunk_size=CHUNK, backup_id=backup_id)
    step = WriteManifest(backend, store, request, f"backup-{backup_id}")
    token = transfer.pop("_token", None) or acquire_lease(store.objects, backup_id).token
    step.execute({"strategy": "direct-stream"}, transfer, {"token": token})


def test_the_transfer_result_is_json_and_compact(file_backend: Backend, store: Store) -> None:
    """What TaskFlow persists: JSON-serialisable, the chunks as base64 columns."""
    put_volume(file_backend, "vol-1", mixed_data())
    transfer = _transfer(file_backend, store, "b1")
    persisted = json.loads(json.dumps(transfer))  # what a SQL persistence gives back
    assert persisted["chunks"]["form"] == "columns"
    _write(file_backend, store, "b1", persisted)
    chunks = read_manifest(store.objects, "b1").chunks
    assert chunks == chunk_list_from_json(transfer["chunks"]) and len(chunks) > 0


def test_a_transfer_result_persisted_as_rows_still_writes_its_manifest(
    file_backend: Backend, store: Store
) -> None:
    """A job persisted by the previous version (chunks as chunks_to_json rows) resumes at
    write-manifest: the same manifest as from the columns form."""
    put_volume(file_backend, "vol-1", mixed_data())
    transfer = _transfer(file_backend, store, "b1")
    rows = {**transfer, "chunks": chunks_to_json(chunk_list_from_json(transfer["chunks"]))}
    del rows["_token"]  # b2 takes a lease of its own
    _write(file_backend, store, "b1", json.loads(json.dumps(transfer)))
    _write(file_backend, store, "b2", json.loads(json.dumps(rows)))
    one, two = read_manifest(store.objects, "b1"), read_manifest(store.objects, "b2")
    assert one.chunks == two.chunks and one.data_bytes == two.data_bytes > 0


def test_a_worker_sends_rows(file_backend: Backend, store: Store) -> None:
    """BackupTransfer (a worker) returns rows, all a conductor of an earlier version reads
    (workers are upgraded first); in process the result has the columns."""
    put_volume(file_backend, "vol-1", mixed_data())
    request = BackupRequest("vol-1", chunk_size=CHUNK, backup_id="b1")
    step = TransferChunks(file_backend, store, request, "backup-b1")
    source: dict[str, str | None] = {"volume_id": "vol-1", "snapshot_id": None}
    rows = step.transfer({"strategy": "direct-stream"}, source, ROWS)["chunks"]
    columns = step.transfer({"strategy": "direct-stream"}, source)["chunks"]
    assert isinstance(rows, list) and all(isinstance(r, list) and len(r) == 5 for r in rows)
    assert chunk_list_from_json(rows) == chunk_list_from_json(columns) and rows
