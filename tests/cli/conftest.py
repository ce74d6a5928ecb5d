"""Run the real ``pieceworks`` console script in subprocesses, on temporary homes.

Every test gets its own ``HOME`` and ``PIECEWORKS_HOME`` (so nobody's real
configuration or data is touched) and runs the installed entry point
(``.venv/bin/pieceworks``), falling back to ``python -m pieceworks``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pieceworks.cli.main import main

REPO = Path(__file__).resolve().parents[2]
PLUGINS = Path(__file__).resolve().parent / "plugins"
_SCRIPT = Path(sys.executable).parent / "pieceworks"
COMMAND: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "pieceworks"]
MiB = 1024 * 1024


@dataclass(frozen=True)
class Result:
    """A finished ``pieceworks`` process."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        """Stdout parsed as JSON."""
        return json.loads(self.out)

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"pieceworks {command} -> {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


Run = Callable[..., Result]
Call = Callable[..., Result]
RunAll = Callable[..., list[Result]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty ``PIECEWORKS_HOME``."""
    return tmp_path / "pwhome"


@pytest.fixture
def bare_env(tmp_path: Path, home: Path) -> dict[str, str]:
    """A ``pieceworks`` environment with no configuration: a temporary HOME and PIECEWORKS_HOME.

    Everything is the built-in default, including flows run without TaskFlow
    persistence.
    """
    fake_home = tmp_path / "user"
    fake_home.mkdir()
    e = {k: v for k, v in os.environ.items() if not k.startswith("PIECEWORKS_")}
    e.update(HOME=str(fake_home), PIECEWORKS_HOME=str(home), PYTHONUNBUFFERED="1")
    e.pop("XDG_CONFIG_HOME", None)
    return e


@pytest.fixture
def env(bare_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """`bare_env` plus a PIECEWORKS_CONFIG that only sets in-memory TaskFlow persistence.

    Backends and stores stay the built-in defaults; the SQLite persistence
    backend costs about a second per run (schema check and commits), which
    the tests that are not about persistence skip.
    """
    path = tmp_path / "memory.toml"
    path.write_text('[engine]\npersistence = "memory://"\n', encoding="utf-8")
    return {**bare_env, "PIECEWORKS_CONFIG": str(path)}


def with_plugins(env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus the third-party test plugins (and the repo, for tests.support) on the path."""
    e = dict(env)
    e["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), str(REPO), e.get("PYTHONPATH", "")])
    return e


def _start(args: Sequence[str], env: Mapping[str, str], cwd: Path | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *args],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def run(env: dict[str, str], tmp_path: Path) -> Run:
    """``run("backup", "--volume", "v", env=...)``: run pieceworks and wait for it."""

    default_env = env

    def go(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
        proc = _start(args, default_env if env is None else env, tmp_path)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:  # fail the test, never leave the process running
            proc.kill()
            proc.communicate()
            raise
        return Result(tuple(args), proc.returncode, out, err)

    return go


@pytest.fixture
def run_all(env: dict[str, str], tmp_path: Path) -> RunAll:
    """Run independent pieceworks commands at once (results in order).

    Each command is a list of arguments, or ``(arguments, environment)``.
    """
    default_env = env

    def go(
        commands: Sequence[Sequence[str] | tuple[Sequence[str], Mapping[str, str]]],
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> list[Result]:
        procs = []
        for command in commands:
            if isinstance(command, tuple):
                args, its_env = command
            else:
                args, its_env = command, (default_env if env is None else env)
            procs.append((tuple(args), _start(args, its_env, tmp_path)))
        results = []
        try:
            for args, proc in procs:
                out, err = proc.communicate(timeout=timeout)
                results.append(Result(args, proc.returncode, out, err))
        finally:  # a command that timed out (or any left after a failure) is killed
            for _args, proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        return results

    return go


@pytest.fixture
def call(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Call:
    """``call("list", env=...)``: run `pieceworks.cli.main.main` in this process.

    The same code as the console script without the ~1 s of process start
    and imports; for the many error paths. Logging configuration that
    `main` sets up is put back afterwards.
    """
    default_env = env
    root = logging.getLogger()
    noisy = [logging.getLogger(n) for n in ("taskflow", "stevedore", "alembic", "sqlalchemy")]

    def go(*args: str, env: Mapping[str, str] | None = None) -> Result:
        handlers, level = list(root.handlers), root.level
        levels = [lg.level for lg in noisy]
        capsys.readouterr()
        try:
            code = main(list(args), env=default_env if env is None else env)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
            for lg, lv in zip(noisy, levels, strict=True):
                lg.setLevel(lv)
        captured = capsys.readouterr()
        return Result(tuple(args), code, captured.out, captured.err)

    return go


def write_volume(directory: Path, name: str, size: int, *, seed: int = 0) -> Path:
    """A volume file of `size` bytes made of distinct, incompressible 1 MiB blocks.

    One random block is repeated with each copy's first 16 bytes changed, so
    big volumes are quick to make yet no two chunks (of 64 KiB or more) are
    equal.
    """
    directory.mkdir(parents=True, exist_ok=True)
    block = bytearray(os.urandom(MiB))
    path = directory / name
    with open(path, "wb") as f:
        for i in range(0, size, MiB):
            for j in range(0, MiB, 64 * 1024):
                block[j : j + 16] = f"{seed:04d}-{i:06d}-{j:05d}".encode()[:16].ljust(16, b".")
            f.write(block[: min(MiB, size - i)])
    return path


def config_file(tmp_path: Path, text: str, name: str = "pieceworks.toml") -> Path:
    """Write a configuration file and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def has_dot() -> bool:
    """Whether Graphviz's dot is installed."""
    return shutil.which("dot") is not None


def no_dac_override() -> list[str]:
    """The command prefix that makes file permissions bind even for root (CAP_DAC_* dropped)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps=-all"]


def without_dac_override(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> Result:
    """Run pieceworks so that file permissions bind even for root (`no_dac_override`)."""
    proc = subprocess.run(
        [*no_dac_override(), *COMMAND, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
