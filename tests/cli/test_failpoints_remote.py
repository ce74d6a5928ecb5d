"""Replications to and from a remote target, killed at every point, keep the invariants of issue 9.

A site: backend ``local`` (file), backend ``far`` (a real ``pieceworks.drivers
.remote.server`` process serving its own directory) and store ``local``.
Replications between them run via the store: the manager (or the target)
pushes chunks, the other side fills the copy. Each point arms a failpoint in
the manager (``pieceworks replicate``) or in the target process, lets it fire
(``kill``: SIGKILL; ``raise``: an ordinary failure) and then checks, as in
`tests/cli/test_failpoints_kill.py`:

1. every backup completed before verifies and restores byte for byte;
2. the replica is either complete (byte for byte) or absent;
3. nothing blocks: ``gc`` is not deferred, a new backup runs at once;
4. the replication runs again;
5. ``pieceworks recover`` then ``gc`` leave no leftovers: no lease, lock or run
   journal, no temporary snapshot on either backend, no ``.tmp-*`` or
   ``.incoming`` file on either side, no unreferenced chunk.

A killed target is started again (on the same directory and port) before the
checks, as its service manager would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.failpoints import ENV_VAR
from tests.cli.conftest import COMMAND, Call, MiB, Result, with_plugins, write_volume
from tests.drivers.test_remote import REPO, TARGET, _first_line, _stop
from tests.support.leftovers import leftovers

CHUNK = "256KiB"


@dataclass(frozen=True)
class Point:
    """A failpoint spec, the process it is armed in, and the replication it hits.

    `armed`: ``manager`` (``pieceworks replicate``), ``far`` or ``far2`` (a
    target process). With `external`, the manager is SIGKILLed from outside
    once the copy appears in the receiving side's ``.incoming`` (a sleep
    armed in a target holds the copy there). `direction`: ``out`` (local ->
    far: the manager stages, far pulls), ``in`` (far -> local: far pushes,
    the manager fills the copy), ``peer`` (far -> far2: far sends to far2
    itself, native).
    """

    spec: str
    armed: str
    direction: str
    external: bool = False

    @property
    def name(self) -> str:
        return f"{self.direction}:{self.armed}{':external' if self.external else ''}:{self.spec}"


POINTS = [
    Point("replicate.snapshot-created=kill", "manager", "out"),
    Point("store.tmp-written=kill@3", "manager", "out"),
    Point("replicate.staged=kill", "manager", "out"),
    Point("replicate.snapshot-deleted=kill", "manager", "out"),
    Point("replicate.staged=raise", "manager", "out"),
    Point("target.incoming-written=kill@2", "far", "out"),
    Point("target.incoming-written=raise@2", "far", "out"),
    Point("target.incoming-written=sleep:3000", "far", "out", external=True),
    Point("replicate.snapshot-created=kill", "manager", "in"),
    Point("store.tmp-written=kill@3", "far", "in"),
    Point("store.tmp-written=sleep:3000", "far", "in", external=True),
    Point("replicate.staged=kill", "manager", "in"),
    Point("restore.chunk-written=kill@2", "manager", "in"),
    Point("replicate.snapshot-deleted=kill", "manager", "in"),
    Point("restore.chunk-written=raise@2", "manager", "in"),
    Point("replicate.snapshot-created=kill", "manager", "peer"),
    Point("target.incoming-written=kill@2", "far2", "peer"),
    Point("target.incoming-written=raise@2", "far2", "peer"),
    Point("target.incoming-written=sleep:3000", "far2", "peer", external=True),
    Point("replicate.snapshot-deleted=kill", "manager", "peer"),
]

_ROUTES = {
    "out": ("local", "vol", "far"),
    "in": ("far", "rvol", "local"),
    "peer": ("far", "rvol", "far2"),
}


def _replicate(direction: str, copy: str) -> list[str]:
    source, volume, target = _ROUTES[direction]
    return [
        "replicate",
        "--from-backend",
        source,
        "--volume",
        volume,
        "--to-backend",
        target,
        "--to-volume",
        copy,
        "--in-use",
        "--chunk-size",
        CHUNK,
    ]


class Target:
    """The ``far`` target process; `start` (again) on the same directory and port."""

    def __init__(self, directory: Path, log: Path) -> None:
        self.directory, self.log = directory, log
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self, failpoints: str = "") -> str:
        env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
        if failpoints:
            env[ENV_VAR] = failpoints
        with open(self.log, "ab") as err:
            self.process = subprocess.Popen(
                [*TARGET, "--dir", str(self.directory), "--port", str(self.port)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=REPO,
                env=env,
            )
        line = _first_line(self.process, timeout=20)
        assert line.startswith("listening on http://127.0.0.1:"), (line, self.log.read_text())
        self.port = int(line.rpartition(":")[2])
        return line.removeprefix("listening on ")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None


class Site:
    """Directories ``volumes`` (backend local), ``far`` (the target's), ``backups`` (store)."""

    def __init__(self, root: Path, env: dict[str, str], call: Call) -> None:
        self.root, self.env, self.call = root, env, call
        self.volumes, self.far, self.store = root / "volumes", root / "far", root / "backups"
        self.far2 = root / "far2"

    def directory(self, backend: str) -> Path:
        return {"local": self.volumes, "far": self.far, "far2": self.far2}[backend]

    def ok(self, *args: str) -> Result:
        done = self.call(*args)
        assert done.code == 0, done
        return done

    def run(self, spec: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        env = {**self.env, ENV_VAR: spec} if spec else self.env
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
        rows = self.ok("list", "--json").json()
        assert isinstance(rows, list)
        return rows

    def leftovers(self) -> list[str]:
        found = leftovers(self.store, (self.volumes, self.far, self.far2))
        return found + [str(p) for p in (self.root / "pwhome" / "journal").glob("*")]


_CONFIG = """
[backends.local]
driver = "file"
path = "{root}/volumes"
[backends.far]
driver = "remote"
url = "{url}"
[backends.far2]
driver = "remote"
url = "{url2}"
[stores.local]
driver = "posix"
path = "{root}/backups"
durable = false
[engine]
persistence = "memory://"
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Volume ``vol`` (local, 3 MiB) with two backups (``base``, ``extra``); ``rvol`` on far."""
    root = tmp_path_factory.mktemp("remote-failpoint-template")
    write_volume(root / "volumes", "vol", 3 * MiB, seed=11)
    write_volume(root / "far", "rvol", 3 * MiB, seed=12)
    (root / "far2").mkdir()
    (root / "user").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIECEWORKS_")}
    env.update(HOME=str(root / "user"), PIECEWORKS_HOME=str(root / "pwhome"))
    (root / "config.toml").write_text(
        _CONFIG.format(root=root, url="http://127.0.0.1:9", url2="http://127.0.0.1:9"),
        encoding="utf-8",
    )
    env["PIECEWORKS_CONFIG"] = str(root / "config.toml")
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
        with open(root / "volumes" / "vol", "r+b") as f:
            f.seek(MiB)
            f.write(os.urandom(MiB))
    (root / "ids.json").write_text(json.dumps(ids))
    return root


@pytest.fixture
def targets(template: Path, tmp_path: Path) -> Iterator[dict[str, Target]]:
    shutil.copytree(template, tmp_path / "site")
    found = {n: Target(tmp_path / "site" / n, tmp_path / f"{n}.log") for n in ("far", "far2")}
    yield found
    for target in found.values():
        target.stop()


def _site(root: Path, targets: dict[str, Target], env: dict[str, str], call: Call) -> Site:
    urls = {n: f"http://127.0.0.1:{t.port}" for n, t in targets.items()}
    (root / "config.toml").write_text(
        _CONFIG.format(root=root, url=urls["far"], url2=urls["far2"]), encoding="utf-8"
    )
    site_env = with_plugins(
        {
            **env,
            "PIECEWORKS_CONFIG": str(root / "config.toml"),
            "PIECEWORKS_HOME": str(root / "pwhome"),
        }
    )
    return Site(root, site_env, lambda *a: call(*a, env=site_env))


def _kill_during_the_copy(site: Site, args: list[str], incoming: Path, pattern: str) -> None:
    """Run the replication and SIGKILL it once a file matching `pattern` is in `incoming`.

    (The receiving side's ``.incoming`` copy, or the sending target's snapshot.)
    """
    manager = subprocess.Popen(
        [*COMMAND, *args],
        env=site.env,
        cwd=site.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(incoming.glob(pattern)):
            assert manager.poll() is None, "the replication ended before the copy began"
            assert time.monotonic() < deadline, "the copy never began"
            time.sleep(0.05)
    finally:
        manager.kill()
        manager.wait()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("point", POINTS, ids=lambda p: p.name)
def test_a_failure_at_each_replication_point_keeps_every_invariant(
    targets: dict[str, Target],
    tmp_path: Path,
    env: dict[str, str],
    call: Call,
    monkeypatch: pytest.MonkeyPatch,
    point: Point,
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    root = tmp_path / "site"
    ids: dict[str, str] = json.loads((root / "ids.json").read_text())
    for name, target in targets.items():
        target.start(point.spec if point.armed == name else "")
    site = _site(root, targets, env, call)
    before = {b["backup_id"] for b in site.backups()}
    source_backend, volume, target_backend = _ROUTES[point.direction]
    data = (site.directory(source_backend) / volume).read_bytes()
    replica = site.directory(target_backend) / "copy"

    args = _replicate(point.direction, "copy")
    if point.external:
        if point.direction == "in":  # far pushes from its snapshot: kill during the push
            _kill_during_the_copy(site, args, site.far / ".snapshots" / "rvol", "pw-*")
        else:
            _kill_during_the_copy(site, args, replica.parent / ".incoming", "copy.*")
    else:
        failed = site.run(point.spec if point.armed == "manager" else "", args)
        if point.armed == "manager" and "=kill" in point.spec:
            assert failed.returncode == -signal.SIGKILL, (failed.stdout, failed.stderr)
        else:
            # an ordinary failure: reverted, and the next strategy may succeed
            assert failed.returncode in (ExitCode.OK, ExitCode.FAILED), failed
            assert "Traceback" not in failed.stderr, failed.stderr
    if point.armed != "manager" and not point.external:  # (a sleep fires once: kept running)
        armed = targets[point.armed]
        assert armed.process is not None
        if "=kill" in point.spec:
            assert armed.process.wait(10) == -signal.SIGKILL
        armed.stop()  # then restarted (without the failpoint) by its service manager
        armed.start()

    # 1. earlier backups verify and restore byte for byte
    site.ok("verify", ids["base"])
    site.ok("restore", ids["base"], "--backend", "local", "--volume", "check")
    assert (site.volumes / "check").read_bytes() == (root / "base.bin").read_bytes()
    # 2. the replica is complete or absent. A live target notices a killed manager at
    # its next heartbeat and stops (after a sleeping failpoint wakes): until then its
    # copy or chunk files are a live run's, kept by recover, so wait for it (bounded).
    deadline = time.monotonic() + 15
    incoming = replica.parent / ".incoming"
    while (
        point.external
        and time.monotonic() < deadline
        and (list(incoming.glob("copy.*")) or list(site.store.rglob(".tmp-*")))
    ):
        time.sleep(0.2)
    assert not replica.exists() or replica.read_bytes() == data
    for row in site.backups():
        site.ok("verify", str(row["backup_id"]))
    # 3. nothing blocks
    gc = site.call("gc", "--json")
    assert gc.code == ExitCode.OK and gc.json()["deferred_by"] == [], gc
    assert site.ok("backup", "--backend", "local", "--volume", "vol", "--json").json()
    # 4. the replication runs again
    site.ok(*_replicate(point.direction, "copy-again"))
    assert (replica.parent / "copy-again").read_bytes() == data
    # 5. recover then gc: no leftovers
    recovered = site.ok("recover", "--json").json()
    assert recovered["failed"] == 0, recovered
    site.ok("gc")
    assert site.leftovers() == []
    site.ok("verify", ids["base"])
    assert before <= {b["backup_id"] for b in site.backups()}
