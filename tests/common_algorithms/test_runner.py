"""The flow runner: loading an engine (`runner.load_engine`), upgrading a schema (`migrate`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pieceworks.common_algorithms.runner import load_engine


def test_load_engine_imports_the_engine_a_flow_then_runs_on() -> None:
    """After load_engine("serial") the engine's module is imported; a flow then runs on it."""
    probe = (
        "import sys\n"
        "from pieceworks.common_algorithms.runner import load_engine, run_flow\n"
        "assert 'taskflow.engines.action_engine.engine' not in sys.modules\n"
        "load_engine('serial')\n"
        "assert 'taskflow.engines.action_engine.engine' in sys.modules\n"
        "from taskflow import task\n"
        "from taskflow.patterns import linear_flow\n"
        "class Answer(task.Task):\n"
        "    default_provides = 'x.result'\n"
        "    def execute(self):\n"
        "        return {'answer': 42}\n"
        "flow = linear_flow.Flow('x').add(Answer('x.answer'))\n"
        "result = run_flow(flow, operation='test', backend='-', prefix='x')\n"
        "assert result == {'answer': 42}, result\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)


def test_an_engine_nobody_installed_is_a_value_error_naming_it() -> None:
    """A name no ``taskflow.engines`` entry point has: ValueError with that name."""
    load_engine("parallel")  # installed: no error
    with pytest.raises(ValueError, match="no TaskFlow engine called 'warp-drive' is installed"):
        load_engine("warp-drive")


def test_processes_opening_a_new_database_at_once_all_get_its_schema(tmp_path: Path) -> None:
    """Two commands started together on a new SQLite database both created its tables.

    The second failed: ``StorageFailure: Failed upgrading database version
    ... table logbooks already exists`` (``jobs migrate`` beside a conductor,
    two backups with ``[engine] persistence``). Eight processes migrate each
    of six new databases at once; every one must succeed.
    """
    code = (
        "import sys\n"
        "from pieceworks.common_algorithms.runner import migrate\n"
        "migrate(sys.argv[1])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for round_ in range(6):
        url = f"sqlite:///{tmp_path / f'jobs-{round_}.db'}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, url],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(8)
        ]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        failed = [out for p, out in zip(procs, outputs, strict=True) if p.returncode != 0]
        assert not failed, failed[0]
