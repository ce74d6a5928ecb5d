"""The remote package's layout: who imports whom, entry points, the old module name."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pieceworks.drivers.remote_target as shim
from pieceworks.drivers.remote.client import RemoteDriver
from pieceworks.drivers.remote.protocol import pushed_from_json, pushed_to_json
from pieceworks.drivers.remote.server import main
from pieceworks.protocols import PushedVolume


def test_the_client_imports_the_protocol_and_nothing_of_the_target() -> None:
    """`RemoteDriver` loads without the target's service, HTTP server or data paths."""
    code = (
        "import json, sys, pieceworks.drivers.remote.client\n"
        "print(json.dumps([m for m in sys.modules if m.startswith('pieceworks.drivers')]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    assert "pieceworks.drivers.remote.protocol" in loaded
    for module in ("transfer", "service", "http", "server"):
        assert f"pieceworks.drivers.remote.{module}" not in loaded
    assert "pieceworks.drivers.file" not in loaded


def test_entry_points_name_the_new_modules() -> None:
    """The ``remote`` driver and the ``remote-target`` service load from the package."""
    (driver,) = entry_points(group="pieceworks.drivers", name="remote")
    (service,) = entry_points(group="pieceworks.services", name="remote-target")
    assert driver.load() is RemoteDriver
    assert service.load() is main


def test_the_old_module_name_still_runs_the_target_and_exports_its_names() -> None:
    """``python -m pieceworks.drivers.remote_target`` is the server's command line."""
    assert shim.main is main
    assert all(hasattr(shim, name) for name in shim.__all__)
    done = subprocess.run(
        [sys.executable, "-m", "pieceworks.drivers.remote_target", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "python -m pieceworks.drivers.remote_target" in done.stdout
    assert "--dir" in done.stdout


def test_a_push_result_counts_the_objects_written_and_reads_an_older_one() -> None:
    """``chunks_written`` travels with a push's result; a target that predates it sends
    none, and the manager reads None (not a KeyError)."""
    pushed = PushedVolume(8, (), 8, 12, 1)
    assert pushed_from_json(pushed_to_json(pushed)) == pushed
    older = {k: v for k, v in pushed_to_json(pushed).items() if k != "chunks_written"}
    assert pushed_from_json(older).chunks_written is None
