"""A remote target's ``.incoming`` leftovers: swept when it starts, and by the manager's recover.

Real target processes (``python -m pieceworks.drivers.remote.server``) on one
directory, one of them killed by a failpoint in the middle of a pull (the
copy it was filling stays in ``.incoming``), and the real ``pieceworks
recover`` on the manager, which reaches the target over its HTTP API.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pieceworks.drivers._files import owned_tag
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.failpoints import ENV_VAR
from pieceworks.protocols import StoreSpec, TransientError, VolumeRef
from pieceworks.protocols.owner import process_start
from tests.cli.conftest import Call, MiB, write_volume
from tests.drivers.test_remote import REPO, TARGET, _first_line, _stop

Start = Callable[..., tuple[str, subprocess.Popen[str]]]
CHUNK = 256 * 1024


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(directory, failpoints="")``: a target on `directory`; (url, process)."""
    started: list[subprocess.Popen[str]] = []

    def go(directory: Path, failpoints: str = "") -> tuple[str, subprocess.Popen[str]]:
        env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
        if failpoints:
            env[ENV_VAR] = failpoints
        log = tmp_path / f"target-{len(started)}.log"
        with open(log, "wb") as err:
            process = subprocess.Popen(
                [*TARGET, "--dir", str(directory), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=REPO,
                env=env,
            )
        started.append(process)
        line = _first_line(process, timeout=20)
        assert line.startswith("listening on "), (line, log.read_text())
        return line.removeprefix("listening on "), process

    yield go
    for process in started:
        _stop(process)


def _kill_a_pull(start: Start, directory: Path, store: Path) -> Path:
    """Start a target that dies (SIGKILL) while filling volume ``copy``; its leftover."""
    url, process = start(directory, "target.incoming-written=kill@2")
    driver = RemoteDriver(url)
    spec = StoreSpec("s", "posix", {"path": str(store), "durable": "false"})
    pushed = driver.push_to_store(VolumeRef("vol"), spec, CHUNK, "zstd")
    with pytest.raises(TransientError):
        driver.pull_from_store(VolumeRef("copy"), pushed.size, spec, pushed.chunks)
    assert process.wait(10) == -signal.SIGKILL
    [left] = list((directory / ".incoming").iterdir())
    assert left.name.startswith("copy."), left
    return left


def _tag(pid: int) -> str:
    """An owned tag naming process `pid` of this host."""
    host, _pid, _start, rand = owned_tag().split("-")
    return f"{host}-{pid}-{process_start(pid) or 0}-{rand}"


def test_a_target_removes_a_dead_run_s_incoming_copy_when_it_starts(
    start: Start, tmp_path: Path
) -> None:
    directory = tmp_path / "volumes"
    write_volume(directory, "vol", 2 * MiB, seed=7)
    left = _kill_a_pull(start, directory, tmp_path / "store")
    start(directory)
    assert not left.exists()
    assert not (directory / "copy").exists()  # the replica is absent, not half there


def test_recover_on_the_manager_reaches_the_target_s_leftovers(
    start: Start, call: Call, env: dict[str, str], tmp_path: Path
) -> None:
    """Dead run's copy: removed; a live writer's: kept; the target's own stray: removed."""
    directory = tmp_path / "volumes"
    write_volume(directory, "vol", 2 * MiB, seed=8)
    url, serving = start(directory)  # already running: its start-up sweep is over
    dead = _kill_a_pull(start, directory, tmp_path / "store")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = directory / ".incoming" / f"other.{_tag(sleeper.pid)}"
        live.write_bytes(b"x")
        stray = directory / ".incoming" / f"third.{_tag(serving.pid)}"  # no write under way
        stray.write_bytes(b"x")
        config = tmp_path / "remote.toml"
        config.write_text(
            f'[backends.far]\ndriver = "remote"\nurl = "{url}"\n'
            f'[stores.s]\ndriver = "posix"\npath = "{tmp_path / "store"}"\n'
            '[engine]\npersistence = "memory://"\n',
            encoding="utf-8",
        )
        e = {**env, "PIECEWORKS_CONFIG": str(config)}
        dry = call("recover", "--dry-run", "--json", env=e)
        assert dry.code == 0 and dead.exists(), dry
        done = call("recover", "--json", env=e)
        assert done.code == 0, done
        items = {
            Path(i["name"]).name: i
            for i in done.json()["items"]
            if i["kind"] == "temporary-file" and i["where"] == "far"
        }
        assert items[dead.name]["action"] == "removed", items
        assert "died" in items[dead.name]["reason"], items
        assert items[live.name]["action"] == "kept", items
        assert "runs" in items[live.name]["reason"], items
        assert items[stray.name]["action"] == "removed", items
        assert "no longer writes" in items[stray.name]["reason"], items
        assert not dead.exists() and live.exists() and not stray.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
