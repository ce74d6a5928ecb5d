"""The founding discussion's example works as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from taskflow import engines
from taskflow.patterns import linear_flow

from examples.founding_manager import ReserveQuota, deploy, manager
from pieceworks.registry import Kind, NotFound

ROOT = Path(__file__).resolve().parents[2]


def test_manager_composes_the_backends_flows_into_its_own_and_runs_them(tmp_path: Path) -> None:
    """any_of ['fast-backup', 'slow-backup', 'live-backup'] returns the active backend's
    backup flow; next to the manager's own tasks it backs up the in-use volume."""
    registry = deploy(str(tmp_path))
    found = registry.find(any_of=["fast-backup", "slow-backup", "live-backup"], backend="lab")
    assert [(r.name, r.kind) for r in found] == [("lab.backup", Kind.FACTORY)]
    outcome = manager(registry, "lab", "vol-1")
    assert outcome["strategy"] == "snapshot-stream"
    assert outcome["backup_id"] == "bk-1"
    assert (tmp_path / "backups" / "manifests" / "bk-1.json").is_file()


def test_asking_for_what_nobody_registered_raises_not_found(tmp_path: Path) -> None:
    """The NotFound path: the message names the query and what each near miss lacks."""
    registry = deploy(str(tmp_path))
    with pytest.raises(NotFound, match=r"no registration matches all of \['replicate'\]"):
        registry.find(["replicate"], backend="lab")
    with pytest.raises(NotFound, match=r"'lab\.backup' \(factory\) lacks \['replicate'\]"):
        registry.find(["replicate", "live-backup"])


def test_restore_and_verify_flows_are_found_the_same_way(tmp_path: Path) -> None:
    """A manager restores through the registry without knowing the driver either."""
    registry = deploy(str(tmp_path))
    manager(registry, "lab", "vol-1")
    flow = linear_flow.Flow("restore-and-check").add(
        ReserveQuota(),
        registry.find_one(["stream-restore"], backend="lab").build(
            backup_id="bk-1", volume_id="vol-2"
        ),
        registry.find_one(["verify"], backend="lab").build(backup_id="bk-1"),
    )
    results = engines.run(flow, store={"volume_id": "vol-2"})
    assert results["lab.verify.result"]["ok"] is True
    assert (tmp_path / "volumes" / "vol-2").read_bytes() == (
        tmp_path / "volumes" / "vol-1"
    ).read_bytes()


def test_the_example_script_runs() -> None:
    """`python examples/founding_manager.py` prints the manager's view end to end."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "founding_manager.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "done by snapshot-stream" in out
    assert "manager: no replication here: no registration matches" in out
