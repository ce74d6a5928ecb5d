"""``--transport`` is a URL, as ``[jobs] transport`` must be; ``--backends`` names each once.

``worker --transport notaurl`` reached kombu, which read it as a host name:
exit 1, ``broker-unavailable`` ("Name or service not known"), where the same
value in ``[jobs] transport`` is a configuration error (exit 2). Now the
option is checked as it is parsed (worker and conductor): a usage error
naming it, before any connection. ``worker --backends a,a`` served backend
``a`` twice ("worker ready: serving local, local").
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.cli.conftest import Run

_NOWHERE = ("--jobboard", "redis://127.0.0.1:1/x", "--persistence", "postgresql://127.0.0.1:1/x")
BROKER = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.mark.parametrize("value", ["notaurl", "127.0.0.1:5672", "", "amqp:/x"])
@pytest.mark.parametrize(
    "argv", [["worker"], ["conductor", *_NOWHERE, "--max-dispatches", "0"]], ids=lambda a: a[0]
)
def test_a_transport_that_is_not_a_url_is_a_usage_error(
    run: Run, argv: list[str], value: str
) -> None:
    done = run(*argv, "--transport", value, "--json", timeout=30)
    assert done.code == 2 and done.out == "", done
    doc = json.loads(done.err.strip().splitlines()[-1])
    assert doc["reference"] == "usage-error", doc
    assert doc["message"] == (
        f"pieceworks {argv[0]}: argument --transport: must be a URL: scheme://... (e.g. amqp://HOST/)"
    ), doc


def test_a_backend_named_twice_is_served_once(env: dict[str, str]) -> None:
    """Against the RabbitMQ of the test services (127.0.0.1:5672, guest)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pieceworks.cli", "worker", "--transport", BROKER,
         "--backends", "local,,local"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        line = ""
        while time.monotonic() < deadline and "worker ready" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        assert "worker ready: serving local\n" in line, line + proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, proc.returncode
