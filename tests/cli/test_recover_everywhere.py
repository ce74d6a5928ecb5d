"""``pieceworks recover`` reaches every leftover of a killed run, wherever it lies.

Issue 9, what remained open: temporary files of an encrypted store, the
temporary snapshot of a replication that journals in no store, a remote
target's ``.incoming`` copies, and the staleness of owners on other hosts
(``[leases] stale_after_seconds``). Each test kills or fakes the real thing
and runs the real ``pieceworks``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from pieceworks.drivers._files import owned_tag
from pieceworks.failpoints import ENV_VAR
from tests.cli.conftest import COMMAND, Call, MiB, Result, write_volume

PASSWORD = "Tr0ub4dor-&-3-zebra"


def _killed(args: list[str], env: dict[str, str], spec: str, cwd: Path) -> None:
    """Run pieceworks with failpoint `spec` armed; it must die by SIGKILL there."""
    done = subprocess.run(
        [*COMMAND, *args],
        env={**env, ENV_VAR: spec},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, (done.stdout, done.stderr)


def _ok(done: Result) -> Result:
    assert done.code == 0, done
    return done


def _files(top: Path, pattern: str) -> list[str]:
    return sorted(str(p) for p in top.rglob(pattern) if p.is_file())


# -- 4. an encrypted store's temporary files ---------------------------------------


def test_recover_and_gc_sweep_a_dead_writers_tmp_files_in_an_encrypted_store(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A backup killed while a chunk's temporary file exists: recover + gc leave nothing."""
    e = {**env, "PIECEWORKS_PASSWORD": PASSWORD}
    _ok(call("key", "init", env=e))
    write_volume(home / "volumes", "vol", 2 * MiB, seed=4)
    _killed(
        ["backup", "--volume", "vol", "--in-use", "--chunk-size", "256KiB"],
        e,
        "store.tmp-written=kill@4",
        tmp_path,
    )
    store = home / "backups"
    assert _files(store, ".tmp-*"), "the kill left no temporary file: the test proves nothing"
    recovered = _ok(call("recover", "--json", env=e)).json()
    assert recovered["failed"] == 0, recovered
    assert any(
        i["kind"] == "temporary-file" and i["action"] == "removed" for i in recovered["items"]
    ), recovered
    _ok(call("gc", env=e))
    assert _files(store, ".tmp-*") == []
    for sub in ("leases", "locks", "runs"):
        assert _files(store / sub, "*") == [], sub
    assert _files(home / "volumes" / ".snapshots", "*") == []
    assert _ok(call("backup", "--volume", "vol", "--json", env=e)).json()["backup_id"]


def test_gc_sweeps_only_dead_writers_tmp_files_of_an_encrypted_store(
    call: Call, env: dict[str, str], home: Path
) -> None:
    """gc alone sweeps an encrypted store too, and keeps a live writer's temporary file."""
    e = {**env, "PIECEWORKS_PASSWORD": PASSWORD}
    _ok(call("key", "init", env=e))
    chunks = home / "backups" / "chunks" / "ab"
    chunks.mkdir(parents=True)
    mine = chunks / f".tmp-{owned_tag()}"  # this process: alive
    mine.write_bytes(b"x")
    host, _pid, _start, rand = owned_tag().split("-")
    gone = chunks / f".tmp-{host}-{2**22 + 17}-1-{rand}"  # a pid above pid_max: dead
    gone.write_bytes(b"x")
    _ok(call("gc", env=e))
    assert mine.exists()
    assert not gone.exists()
    os.unlink(mine)
