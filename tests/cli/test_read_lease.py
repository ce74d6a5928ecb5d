"""Deleting a backup while it is read: the reader finishes, the collection waits (real CLI).

A restore (to a file or a volume), verify and check hold a read lease on the
store from before they read a manifest until their last chunk: ``delete``
meanwhile removes the manifest and exits 75 (collection deferred, the read
lease named), and the restore completes byte for byte, instead of failing
with exit 4 "chunk missing" as if the store were corrupt. A killed or
terminated reader leaves nothing that blocks the next collection.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.failpoints import ENV_VAR
from tests.cli.conftest import COMMAND, Call, MiB, write_volume


def _backed_up(call: Call, home: Path) -> str:
    write_volume(home / "volumes", "vol", 4 * MiB, seed=11)
    done = call("backup", "--volume", "vol", "--chunk-size", "256KiB", "--json")
    assert done.code == ExitCode.OK, done
    return str(done.json()["backup_id"])


def _read_leases(home: Path) -> list[Path]:
    return sorted((home / "backups" / "leases").glob("read.*"))


def _start(args: list[str], env: dict[str, str], spec: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *args],
        env={**env, ENV_VAR: spec},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(what: str, proc: subprocess.Popen[str], ready: object) -> None:
    deadline = time.monotonic() + 60
    while not ready():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate()
            raise AssertionError(f"{what} never happened (exit {proc.returncode}): {err}{out}")
        time.sleep(0.05)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("into", ["file", "volume"])
def test_deleting_a_backup_during_its_restore_defers_and_the_restore_completes(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path, into: str
) -> None:
    """The issue's reproduction: the restore sleeps after its third chunk, delete runs then.

    Before read leases the delete collected the chunks and the restore
    failed with exit 4 "chunk missing".
    """
    backup_id = _backed_up(call, home)
    target = tmp_path / "restored.img"
    args = (
        ["restore", backup_id, "--to-file", str(target)]
        if into == "file"
        else ["restore", backup_id, "--volume", "restored"]
    )
    proc = _start(args, env, "restore.chunk-written=sleep:6000@3", tmp_path)
    try:
        # The target's temporary exists once the manifest has been read and writing began.
        if into == "file":
            _wait_for("the restore's temporary file", proc, lambda: any(tmp_path.glob(".*pw-*")))
        else:
            incoming = home / "volumes" / ".incoming"
            _wait_for("the restore's .incoming copy", proc, lambda: any(incoming.glob("*")))
        deleted = call("delete", backup_id, "--json")
        assert deleted.code == ExitCode.DEFERRED, deleted
        doc = deleted.json()
        assert doc["deferred"] is True and doc["chunks_deleted"] == 0
        assert doc["deferring_backup_ids"] == []
        (lease,) = doc["blocking_leases"]
        assert lease["kind"] == "read" and lease["operation"] == "restore"
        assert lease["backup_ids"] == [backup_id] and lease["state"] == "alive"
        assert f"pid {proc.pid}" in lease["owner"]
        text = call("gc")
        assert text.code == ExitCode.DEFERRED, text
        assert f"restore reading backup {backup_id} (host " in text.out, text
        assert call("list", "--json").json() == []  # the backup is gone at once
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.OK, err
    restored = target if into == "file" else home / "volumes" / "restored"
    assert restored.read_bytes() == (home / "volumes" / "vol").read_bytes()
    assert _read_leases(home) == []
    collected = call("gc", "--json")
    assert collected.code == ExitCode.OK and collected.json()["chunks_deleted"] == 16, collected


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "command",
    [["verify", "{id}"], ["check", "--read-data-subset", "100%"]],
    ids=["verify", "check"],
)
def test_verify_and_check_defer_collection_while_they_read(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path, command: list[str]
) -> None:
    """Held just after taking the read lease: gc defers naming the reader, which then passes."""
    backup_id = _backed_up(call, home)
    args = [a.replace("{id}", backup_id) for a in command]
    proc = _start(args, env, "read.lease-taken=sleep:5000", tmp_path)
    try:
        _wait_for("the read lease", proc, lambda: bool(_read_leases(home)))
        gc = call("gc", "--json")
        assert gc.code == ExitCode.DEFERRED, gc
        (lease,) = gc.json()["blocking_leases"]
        assert lease["kind"] == "read" and lease["operation"] == args[0]
        assert lease["backup_ids"] == ([backup_id] if args[0] == "verify" else [])
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OK, err + out
    assert _read_leases(home) == []


@pytest.mark.timeout(120)
def test_a_killed_restore_leaves_a_lease_that_blocks_no_collection(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """SIGKILL mid-restore (no cleanup runs): the next gc sees the owner dead, is not
    deferred, and removes the lease."""
    backup_id = _backed_up(call, home)
    proc = _start(
        ["restore", backup_id, "--to-file", str(tmp_path / "x.img")],
        env,
        "restore.chunk-written=kill@2",
        tmp_path,
    )
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (left,) = _read_leases(home)
    gc = call("gc", "--json")
    assert gc.code == ExitCode.OK, gc
    doc = gc.json()
    assert doc["deferred"] is False and f"leases/{left.name}" in doc["stale_markers"]
    assert _read_leases(home) == []
    assert call("verify", backup_id).code == ExitCode.OK  # the backup was never at risk


@pytest.mark.timeout(120)
@pytest.mark.parametrize("into", ["file", "volume"])
def test_sigterm_during_a_restore_removes_its_read_lease(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path, into: str
) -> None:
    """SIGTERM stops the restore as Ctrl-C does (exit 130), and the lease goes with it."""
    backup_id = _backed_up(call, home)
    args = (
        ["restore", backup_id, "--to-file", str(tmp_path / "x.img")]
        if into == "file"
        else ["restore", backup_id, "--volume", "restored"]
    )
    proc = _start(args, env, "restore.chunk-written=sleep:10000@2", tmp_path)
    incoming = home / "volumes" / ".incoming"
    try:
        if into == "file":
            _wait_for("the restore's temporary file", proc, lambda: any(tmp_path.glob(".*pw-*")))
        else:
            _wait_for("the restore's .incoming copy", proc, lambda: any(incoming.glob("*")))
        assert _read_leases(home)
        proc.send_signal(signal.SIGTERM)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert _read_leases(home) == []
    assert not (tmp_path / "x.img").exists() and not (home / "volumes" / "restored").exists()
    gc = call("gc", "--json")
    assert gc.code == ExitCode.OK and gc.json()["stale_markers"] == [], gc
