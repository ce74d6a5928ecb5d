"""Fixtures of the execution tests: services up (fail, never skip), a jobboard per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy
import taskflow.exceptions

from pieceworks.execution import destroy_job_book
from tests.execution.support import (
    PERSISTENCE,
    REDIS_HOST,
    REDIS_PORT,
    REPO,
    TEST_DRIVERS,
    Board,
)


@pytest.fixture(scope="session", autouse=True)
def _services_up() -> None:
    """Fail (never skip) at once if Redis or PostgreSQL is not reachable."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3)
    assert client.ping(), f"Redis at {REDIS_HOST}:{REDIS_PORT} is not answering"
    client.close()
    engine = sqlalchemy.create_engine(PERSISTENCE)
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1
    engine.dispose()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    """A unique jobboard namespace; a test-only driver installed through a dist-info."""
    plugins = tmp_path / "plugins"
    info = plugins / "pw_jobs_testdriver-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pw-jobs-testdriver\nVersion: 1.0\n"
    )
    entry_points = "".join(f"{name} = {target}\n" for name, target in TEST_DRIVERS.items())
    (info / "entry_points.txt").write_text(f"[pieceworks.drivers]\n{entry_points}")
    path = os.pathsep.join([str(plugins), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}
    b = Board(tmp_path, f"pw-test-{uuid.uuid4().hex[:12]}", env)
    try:
        yield b
    finally:
        for proc in b.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for job in b.jobs:
            with contextlib.suppress(taskflow.exceptions.NotFound):  # removed by the test
                destroy_job_book(PERSISTENCE, job)
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        keys = list(client.scan_iter(match=f"{b.namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()
