"""The founding example as a resumable job: the manager posts reserve-quota, the backend's
backup piece and update-record as one composed job; a conductor is killed mid-transfer;
another rebuilds the flow from its own configuration and finishes it; the quota was
reserved once. Real Redis jobboard, real PostgreSQL, conductors as real processes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from examples.founding_manager import ReserveQuota, compose
from pieceworks.common_algorithms import Backend, Store, register_backend
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import atom_states, wait_for
from pieceworks.execution.composed import post_composed
from pieceworks.protocols import ConfigError, StoreSpec
from pieceworks.registry import Composition, Registry
from tests.execution.conftest import board  # noqa: F401  (the fixture)
from tests.execution.support import (
    CHUNK,
    PERSISTENCE,
    Board,
    atom_runs,
    events,
    make_volume,
    poll,
    slow_config,
    stored_chunks,
)


def _runs(events_file: Path, atom: str, state: str) -> int:
    """How many times a conductor's events show the atom named `atom` entering `state`."""
    return sum(
        1
        for e in events(events_file)
        if e["event"] == "atom" and e["atom"] == atom and e["state"] == state
    )


def _manager_registry(tmp_path: Path) -> Registry:
    """The manager's own registry: backend 'lab' and store 'lab', as the conductors name them."""
    store_dir = tmp_path / "store"
    (tmp_path / "volumes").mkdir(exist_ok=True)
    registry = Registry()
    register_backend(
        registry,
        Backend.of("lab", FileDriver(tmp_path / "volumes")),
        Store("lab", PosixStore(store_dir), StoreSpec("lab", "posix", {"path": str(store_dir)})),
    )
    return registry


def test_a_composed_job_is_resumed_after_its_conductor_dies(
    board: Board,  # noqa: F811
    tmp_path: Path,
) -> None:
    """SIGKILL conductor A mid-transfer; B rebuilds the composed flow from its registry and
    resumes it: reserve-quota ran once (on A), the backup completes, update-record ran on B."""
    blocks = 96
    make_volume(tmp_path / "volumes", "vol-1", blocks)
    ledger, records = tmp_path / "ledger", tmp_path / "records"
    records.mkdir()
    composition = compose(
        _manager_registry(tmp_path),
        "lab",
        backup_id="bk-composed",
        ledger=str(ledger),
        records=str(records),
    )
    config = slow_config(board, tmp_path)
    job = post_composed(
        board.url,
        PERSISTENCE,
        composition,
        store="lab",
        values={"volume_id": "vol-1", "chunk_size": CHUNK},
    )
    board.jobs.append(job)
    assert job.result_atom == "update-record"

    a, ev_a = board.conductor("conductor-a", "--claim-expiry", "2", config=config)
    store_dir = tmp_path / "store"
    poll(
        "conductor A to be mid-transfer",
        lambda: atom_runs(ev_a, "transfer-chunks") == 1 and stored_chunks(store_dir) >= 10,
        timeout=60,
    )
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    total = blocks - blocks // 8
    before = stored_chunks(store_dir)
    assert before < total, f"A finished the transfer ({before} chunks) before it was killed"
    persisted = atom_states(PERSISTENCE, job)
    assert persisted["reserve-quota"] == "SUCCESS"
    assert persisted["lab.backup.transfer-chunks"] == "RUNNING"
    assert persisted["update-record"] != "SUCCESS"

    b, ev_b = board.conductor(
        "conductor-b", "--claim-expiry", "2", "--max-dispatches", "1", config=config
    )
    record = wait_for(board.url, PERSISTENCE, job, timeout=90)
    assert b.wait(timeout=30) == 0, board.log("conductor-b")

    assert record["backup_id"] == "bk-composed" and record["strategy"] == "snapshot-stream"
    reservations = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert reservations == [{"volume_id": "vol-1", "pid": a.pid}]  # once, by A
    assert _runs(ev_a, "reserve-quota", "SUCCESS") == 1
    assert _runs(ev_b, "reserve-quota", "RUNNING") == 0
    assert atom_runs(ev_b, "take-lease") == atom_runs(ev_b, "prepare-source") == 0
    assert atom_runs(ev_a, "transfer-chunks", "SUCCESS") == 0
    assert atom_runs(ev_b, "transfer-chunks", "SUCCESS") == 1  # resumed (still RUNNING)
    assert _runs(ev_b, "update-record", "SUCCESS") == 1
    assert json.loads((records / "bk-composed.json").read_text())["volume_id"] == "vol-1"
    manifest = read_manifest(PosixStore(store_dir), "bk-composed")
    assert len(manifest.chunks) == total
    assert not list(PosixStore(store_dir).list("leases/"))


def test_a_composition_that_cannot_be_rebuilt_elsewhere_is_not_posted(
    board: Board,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A manager task added as an instance would not exist on the conductor: refused at post."""
    composition = Composition("local-only")
    composition.add(ReserveQuota())
    with pytest.raises(ConfigError, match="cannot be recorded: task 'reserve-quota'"):
        post_composed(board.url, PERSISTENCE, composition, store="lab")
    with pytest.raises(ConfigError, match="must be JSON-able"):
        post_composed(
            board.url,
            PERSISTENCE,
            compose(_manager_registry(tmp_path), "lab"),
            store="lab",
            values={"volume_id": object()},
        )
