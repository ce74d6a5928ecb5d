"""The pieceworks wheel ships TaskFlow's stubs as ``taskflow-stubs`` (PEP 561, stub-only).

The wheel is built from this tree (no build isolation: ``.[dev]`` installs a
recent setuptools) and unpacked into the site-packages of a fresh venv,
which sees the other dependencies (TaskFlow, zope.interface...) through a
``.pth`` line naming this venv's site-packages (a ``.pth`` there, such as
the editable install's, is not processed from such a line: neither this
repository nor its stubs are on that venv's path). mypy --strict with the
mypy-zope plugin then checks an out-of-tree driver package that uses
pieceworks and TaskFlow against that installation: no MYPYPATH, no
per-module override.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PACKAGE = """
from collections.abc import Sequence

from pieceworks.protocols import AllocatedExtents, Extent, Source
from taskflow import engines, task
from taskflow.patterns import linear_flow


class MyDriver(AllocatedExtents):
    def allocated_extents(self, source: Source) -> Sequence[Extent]:
        return []


class Warm(task.Task):
    def execute(self, volume_id: str) -> str:
        return volume_id


def warm(volume_id: str) -> None:
    engines.run(linear_flow.Flow("warm").add(Warm()), store={"volume_id": volume_id})
"""


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pieceworks wheel, built from a copy of the sources (the tree stays clean)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("pieceworks", "taskflow-stubs"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    done = _run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check"),
            *("--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist")),
            str(src),
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [built] = (tmp_path / "dist").glob("pieceworks-*.whl")
    return built


def test_the_wheel_holds_every_stub_as_a_stub_only_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("taskflow-stubs/") for n in names if n.startswith("taskflow-stubs/")}
    ours = {
        p.relative_to(ROOT / "taskflow-stubs").as_posix()
        for p in ROOT.glob("taskflow-stubs/**/*.pyi")
    }
    assert ours and shipped == ours
    assert "pieceworks/py.typed" in names
    assert not [n for n in names if "__pycache__" in n]


def test_mypy_strict_checks_a_driver_package_against_the_installed_wheel(
    wheel: Path, tmp_path: Path
) -> None:
    """pieceworks and TaskFlow are typed from the wheel's files alone."""
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    zipfile.ZipFile(wheel).extractall(site)
    path = _run([str(python), "-c", "import sys; print('\\n'.join(sys.path))"], tmp_path).stdout
    assert str(ROOT) not in path.splitlines()  # only the wheel's pieceworks and stubs

    package = tmp_path / "author" / "mydriver"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PACKAGE, encoding="utf-8")
    (package / "py.typed").write_text("", encoding="utf-8")
    (package.parent / "mypy.ini").write_text(
        "[mypy]\nstrict = True\nplugins = mypy_zope:plugin\n", encoding="utf-8"
    )
    done = _run(
        [
            *(sys.executable, "-m", "mypy", "--no-incremental"),
            *("--python-executable", str(python), "mydriver"),
        ],
        package.parent,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout

    shutil.rmtree(site / "taskflow-stubs")  # the control: without the stubs, TaskFlow is untyped
    done = _run(
        [
            *(sys.executable, "-m", "mypy", "--no-incremental"),
            *("--python-executable", str(python), "mydriver"),
        ],
        package.parent,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "module is installed, but missing library stubs or py.typed marker" in done.stdout
