"""Kill the real ``pieceworks`` at every failpoint, then check the invariants of the issue.

For each point a real CLI process runs with ``PIECEWORKS_FAILPOINTS=NAME=kill``
and dies by SIGKILL there. Then, in this order:

1. every backup completed before still verifies and restores byte for byte;
2. the killed operation left no manifest or a complete one (every listed
   backup verifies);
3. nothing blocks another operation: ``gc`` is not deferred, and a new
   backup runs at once (no 600 s wait on a dead collector's lock);
4. running the killed operation again succeeds;
5. ``pieceworks recover`` then ``pieceworks gc`` leave no leftovers: no
   lease, lock, run journal, temporary snapshot, ``.tmp-*`` or
   ``.incoming`` file, and no chunk that no manifest references.

Steps other than the killed one run `main` in this process (the same code as
the console script, without its start-up time). Volumes are a few MiB.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.failpoints import ENV_VAR
from tests.cli.conftest import COMMAND, PLUGINS, Call, MiB, Result, with_plugins, write_volume
from tests.support.leftovers import leftovers

CHUNK = "256KiB"


@dataclass(frozen=True)
class Point:
    """One crash scenario: the failpoint spec and the command it kills."""

    spec: str
    command: Callable[[dict[str, str]], list[str]]
    setup: str = ""  # "orphans": leave unreferenced chunks first (for gc)

    @property
    def name(self) -> str:
        return self.spec


def _backup(ids: dict[str, str]) -> list[str]:
    return ["backup", "--volume", "vol", "--in-use", "--chunk-size", CHUNK]


def _incremental(ids: dict[str, str]) -> list[str]:
    return [*_backup(ids), "--incremental"]


def _restore(ids: dict[str, str]) -> list[str]:
    return ["restore", ids["base"], "--volume", "restored"]


def _delete(ids: dict[str, str]) -> list[str]:
    return ["delete", ids["extra"]]


def _gc(ids: dict[str, str]) -> list[str]:
    return ["gc"]


def _replicate(ids: dict[str, str]) -> list[str]:
    return [
        "replicate",
        "--from-backend",
        "local",
        "--volume",
        "vol",
        "--to-backend",
        "other",
        "--to-volume",
        "copy",
        "--in-use",
        "--chunk-size",
        CHUNK,
    ]


def _recover(ids: dict[str, str]) -> list[str]:
    return ["recover"]


POINTS = [
    Point("backup.before-lease=kill", _backup),
    Point("backup.lease-taken=kill", _backup),
    Point("backup.snapshot-created=kill", _backup),
    Point("backup.chunk-stored=kill@3", _backup),
    Point("backup.transfer-done=kill", _backup),
    Point("backup.snapshot-deleted=kill", _backup),
    Point("backup.before-manifest=kill", _backup),
    Point("backup.manifest-written=kill", _backup),
    Point("backup.lease-released=kill", _backup),
    Point("backup.transfer-done=raise;backup.source-reverted=kill", _backup),
    Point("store.tmp-written=kill@3", _backup),
    Point("incremental.parent-read=kill", _incremental),
    Point("incremental.chunk-reused=kill@2", _incremental),
    Point("read.lease-taken=kill", _restore),
    Point("restore.manifest-read=kill", _restore),
    Point("restore.chunk-written=kill@2", _restore),
    Point("restore.before-commit=kill", _restore),
    Point("restore.committed=kill", _restore),
    Point("delete.manifest-removed=kill", _delete),
    Point("gc.lock-taken=kill", _gc, "orphans"),
    Point("gc.leases-checked=kill", _gc, "orphans"),
    Point("gc.chunk-deleted=kill@2", _gc, "orphans"),
    Point("gc.before-unlock=kill", _gc, "orphans"),
    Point("replicate.snapshot-created=kill", _replicate),
    Point("replicate.chunk-copied=kill@2", _replicate),
    Point("replicate.chunk-copied=raise;replicate.before-lease=kill", _replicate),
    Point("replicate.chunk-copied=raise;replicate.staged=kill", _replicate),
    Point("replicate.snapshot-deleted=kill", _replicate),
    Point("recover.item-removed=kill", _recover, "leftovers"),
]


class Site:
    """A configured home: backend ``local`` (file), ``other`` (offload), store ``local``."""

    def __init__(self, root: Path, env: dict[str, str], call: Call) -> None:
        self.root, self.env, self.call = root, env, call
        self.volumes, self.other, self.store = root / "volumes", root / "other", root / "backups"

    def ok(self, *args: str) -> Result:
        done = self.call(*args)
        assert done.code == 0, done
        return done

    def json(self, *args: str) -> object:
        return self.ok(*args, "--json").json()

    def volume(self, name: str, backend: Path | None = None) -> bytes:
        return ((backend or self.volumes) / name).read_bytes()

    def killed(self, spec: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        env = {**self.env, ENV_VAR: spec}
        return subprocess.run(
            [*COMMAND, *args],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def backups(self) -> list[dict[str, object]]:
        rows = self.json("list")
        assert isinstance(rows, list)
        return rows

    def leftovers(self) -> list[str]:
        """Everything a run may leave that must be gone after recover + gc."""
        return leftovers(self.store, (self.volumes, self.other))


_CONFIG = """
[backends.local]
driver = "file"
path = "{root}/volumes"
[backends.other]
driver = "offload"
path = "{root}/other"
[stores.local]
driver = "posix"
path = "{root}/backups"
durable = false
[engine]
persistence = "memory://"
"""


def _site_env(root: Path, base: dict[str, str]) -> dict[str, str]:
    (root / "config.toml").write_text(_CONFIG.format(root=root), encoding="utf-8")
    return with_plugins({**base, "PIECEWORKS_CONFIG": str(root / "config.toml")})


def _change(volume: Path) -> None:
    """Change 1 MiB of the volume, so that the next backup stores new chunks."""
    with open(volume, "r+b") as f:
        f.seek(MiB)
        f.write(os.urandom(MiB))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per module: volume ``vol`` (3 MiB) and two backups of it.

    ``base`` (its data kept in ``base.bin``) and ``extra`` (after a change);
    the volume is changed again after both. Their ids are in ``ids.json``.
    """
    root = tmp_path_factory.mktemp("failpoint-template")
    write_volume(root / "volumes", "vol", 3 * MiB, seed=1)
    (root / "other").mkdir()
    (root / "user").mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIECEWORKS_")}
    base.update(HOME=str(root / "user"), PIECEWORKS_HOME=str(root / "pwhome"))
    env = _site_env(root, base)
    ids: dict[str, str] = {}
    for name in ("base", "extra"):
        done = subprocess.run(
            [*COMMAND, "backup", "--volume", "vol", "--chunk-size", CHUNK, "--json", "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        ids[name] = str(json.loads(done.stdout)["backup_id"])
        if name == "base":
            (root / "base.bin").write_bytes((root / "volumes" / "vol").read_bytes())
        _change(root / "volumes" / "vol")
    (root / "ids.json").write_text(json.dumps(ids))
    return root


@pytest.fixture
def site(
    template: Path, tmp_path: Path, env: dict[str, str], call: Call, monkeypatch: pytest.MonkeyPatch
) -> Site:
    root = tmp_path / "site"
    shutil.copytree(template, root)
    site_env = _site_env(root, env)
    monkeypatch.syspath_prepend(str(PLUGINS))  # the offload test driver, for in-process runs
    monkeypatch.delenv(ENV_VAR, raising=False)
    return Site(root, site_env, lambda *a: call(*a, env=site_env))


def _prepare(site: Site, point: Point) -> dict[str, str]:
    ids: dict[str, str] = json.loads((site.root / "ids.json").read_text())
    if point.setup == "orphans":  # a deleted backup's chunks, not yet collected
        orphan = site.killed("delete.manifest-removed=kill", ["delete", ids["extra"]])
        assert orphan.returncode == -signal.SIGKILL, orphan.stderr
        del ids["extra"]
    if point.setup == "leftovers":  # a killed backup's lease, journal and snapshot
        left = site.killed("backup.snapshot-created=kill", _backup(ids))
        assert left.returncode == -signal.SIGKILL, left.stderr
    return ids


def _check_earlier_backups(site: Site, ids: dict[str, str], label: str) -> None:
    base = site.root / "base.bin"
    site.ok("verify", ids["base"])
    site.ok("restore", ids["base"], "--volume", f"check-{label}")
    assert site.volume(f"check-{label}") == base.read_bytes()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("point", POINTS, ids=lambda p: p.name)
def test_a_kill_at_each_failpoint_keeps_every_invariant(site: Site, point: Point) -> None:
    """SIGKILL at the point; earlier backups intact, nothing stuck, everything cleanable."""
    ids = _prepare(site, point)
    before = {b["backup_id"] for b in site.backups()}
    killed = site.killed(point.spec, point.command(ids))
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)

    # 1. every backup completed before verifies and restores byte for byte
    _check_earlier_backups(site, ids, "after-kill")
    # 2. no manifest, or a complete one
    for row in site.backups():
        site.ok("verify", str(row["backup_id"]))
    # 3. nothing blocks: gc runs (not deferred), a backup starts at once
    gc = site.call("gc", "--json")
    assert gc.code == ExitCode.OK and gc.json()["deferred_by"] == [], gc
    assert site.json("backup", "--volume", "vol", "--chunk-size", CHUNK)
    # 4. the killed operation runs again
    again = point.command(ids)
    if again[0] == "restore":
        again[3] = "restored-again"
    if again[0] == "delete":
        again = ["gc"] if ids["extra"] not in {b["backup_id"] for b in site.backups()} else again
    if again[0] == "replicate":
        again[again.index("copy")] = "copy-again"
    site.ok(*again)
    # 5. recover then gc: no leftovers
    recovered = site.json("recover")
    assert isinstance(recovered, dict) and recovered["failed"] == 0, recovered
    site.ok("gc")
    assert site.leftovers() == []
    site.ok("verify", ids["base"])  # gc kept every chunk it needs
    assert before <= {b["backup_id"] for b in site.backups()} | {ids.get("extra")}
