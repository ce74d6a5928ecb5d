"""The flow runner's engine loading (`runner.load_engine`)."""

from __future__ import annotations

import subprocess
import sys

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
