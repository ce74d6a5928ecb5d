"""A composed flow's recipe is rebuilt by `composed_job_flow` from a host's configuration
alone (drivers by entry point, names resolved by the host), with the same atom names."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from taskflow import engines

from examples.founding_manager import compose, deploy
from pieceworks.common_algorithms.composed import composed_job_flow
from pieceworks.protocols import ConfigError
from pieceworks.registry.description import atoms_of


def _host(tmp_path: Path) -> Any:
    sections = {
        ("backend", "lab"): {
            "name": "lab",
            "driver": "file",
            "options": {"path": str(tmp_path / "volumes")},
        },
        ("store", "backups"): {
            "name": "backups",
            "driver": "posix",
            "options": {"path": str(tmp_path / "backups")},
        },
    }

    def resolve(kind: str, name: str) -> Mapping[str, Any]:
        try:
            return sections[(kind, name)]
        except KeyError:
            raise ConfigError(f"this host configures no {kind} {name!r}") from None

    return resolve


def test_the_founding_composition_is_rebuilt_from_the_hosts_configuration(tmp_path: Path) -> None:
    """The manager's recipe (its own tasks by import path, the backend piece by its names)
    becomes the same flow on a host that knows 'lab' and 'backups' only by configuration."""
    manager_registry = deploy(str(tmp_path))
    ledger, records = tmp_path / "ledger", tmp_path / "records"
    records.mkdir()
    composition = compose(
        manager_registry, "lab", backup_id="bk-9", ledger=str(ledger), records=str(records)
    )
    recipe = json.loads(json.dumps(composition.recipe()))
    assert [s.get("task") for s in recipe["steps"]] == [
        "examples.founding_manager:ReserveQuota",
        None,
        "examples.founding_manager:UpdateRecord",
    ]
    assert recipe["steps"][1]["piece"]["name"] == "lab.backup"
    flow = composed_job_flow(recipe, ["lab"], "backups", resolve=_host(tmp_path))
    assert [a.name for a in atoms_of(flow)] == [a.name for a in atoms_of(composition.flow)]
    results = engines.run(flow, store={"volume_id": "vol-1"})
    assert results["lab.backup.result"]["backup_id"] == "bk-9"
    assert json.loads((records / "bk-9.json").read_text())["strategy"] == "snapshot-stream"
    assert len(ledger.read_text().splitlines()) == 1


def test_a_host_without_the_named_sections_cannot_build_it(tmp_path: Path) -> None:
    """Unknown names and a missing configuration are ConfigErrors naming what is missing."""
    recipe = compose(deploy(str(tmp_path)), "lab").recipe()
    with pytest.raises(ConfigError, match="no backend 'elsewhere'"):
        composed_job_flow(recipe, ["elsewhere"], "backups", resolve=_host(tmp_path))
    with pytest.raises(ConfigError, match="only a conductor that has it in its configuration"):
        composed_job_flow(recipe, ["lab"], "backups")
    with pytest.raises(ConfigError, match="carries no recipe"):
        composed_job_flow({}, ["lab"], "backups", resolve=_host(tmp_path))
