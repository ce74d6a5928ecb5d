"""A worker whose broker cannot be reached exits 1 saying so, instead of serving nothing.

Each backend's TaskFlow worker consumes in a thread; when the broker was
unreachable at start (refused, or a name that does not resolve) that
thread died with a traceback on stderr while the process went on, never
ready, until a signal stopped it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import COMMAND


@pytest.mark.parametrize(
    "transport", ["amqp://guest:guest@127.0.0.1:1/", "amqp://guest:guest@no-such-host.invalid/"]
)
def test_a_worker_that_cannot_reach_its_broker_exits_1_with_the_reason(
    tmp_path: Path, transport: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIECEWORKS_")}
    env.update(HOME=str(tmp_path), PIECEWORKS_HOME=str(tmp_path / "pw"))
    (tmp_path / "pw" / "volumes").mkdir(parents=True)
    done = subprocess.run(
        [*COMMAND, "worker", "--transport", transport, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert error["reference"] == "broker-unavailable", error
    assert "backend 'local'" in error["message"], error
    assert "Traceback" not in done.stderr
