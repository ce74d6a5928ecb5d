"""The ``raise`` and ``sleep`` failpoint actions on the real CLI: reverts, messages, deferrals.

``raise`` makes an ordinary failure: every revert must run (even when one of
them fails too), the user gets the original error in one line, and nothing
is left behind without any ``recover``. ``sleep`` holds a run at a point so
that another command meets it: a gc is then deferred with exit 75 and says
whose lease blocks it and that its owner lives.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.failpoints import ENV_VAR
from tests.cli.conftest import COMMAND, Call, MiB, Run, write_volume

BACKUP = ["backup", "--volume", "vol", "--in-use", "--chunk-size", "256KiB", "-q"]


def _nothing_left(home: Path) -> list[str]:
    store, volumes = home / "backups", home / "volumes"
    left = [str(p) for sub in ("leases", "locks", "runs") for p in (store / sub).glob("*")]
    left += [str(p) for p in (volumes / ".snapshots").rglob("pw-*")]
    left += [str(p) for p in store.rglob(".tmp-*")] + [str(p) for p in volumes.rglob(".tmp-*")]
    return left


@pytest.fixture
def vol(home: Path) -> Path:
    return write_volume(home / "volumes", "vol", 2 * MiB, seed=3)


@pytest.mark.parametrize(
    "spec",
    [
        "backup.lease-taken=raise",
        "backup.snapshot-created=raise",
        "backup.chunk-stored=raise@2",
        "backup.snapshot-deleted=raise",
        "backup.before-manifest=raise",
    ],
)
def test_a_raise_reverts_everything_and_says_so_in_one_line(
    run: Run, env: dict[str, str], home: Path, vol: Path, spec: str
) -> None:
    """An injected failure: exit 1, one line naming it, no manifest, lease or snapshot left."""
    failed = run(*BACKUP, env={**env, ENV_VAR: spec})
    assert failed.code == ExitCode.FAILED, failed
    lines = failed.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.err, failed
    assert lines[0].startswith("pieceworks: error: ")
    assert f"failpoint {spec.split('=', maxsplit=1)[0]} fired" in lines[0]
    assert not list((home / "backups" / "manifests").glob("*"))
    assert _nothing_left(home) == []


def test_every_revert_runs_when_one_of_them_fails(
    run: Run, env: dict[str, str], home: Path, vol: Path
) -> None:
    """The snapshot's revert fails too: the lease is still released, both errors in one line.

    Before, TaskFlow stopped at the failing revert (the lease stayed) and
    printed its traceback even under -q.
    """
    spec = "backup.transfer-done=raise;backup.source-reverted=raise"
    failed = run(*BACKUP, env={**env, ENV_VAR: spec})
    assert failed.code == ExitCode.FAILED, failed
    lines = failed.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.err, failed
    assert "failpoint backup.transfer-done fired" in lines[0]
    assert "cleanup also failed, the rest of it ran: " in lines[0]
    assert "could not delete the temporary snapshot pw-" in lines[0]
    assert not list((home / "backups" / "leases").glob("*")), "the lease revert must run"


def test_a_write_refused_by_the_store_is_named_in_one_line(
    run: Run, env: dict[str, str], home: Path, vol: Path
) -> None:
    """A store that refuses writes (immutable directories): the message says what failed."""
    assert run(*BACKUP).code == 0
    chunks = home / "backups" / "chunks"
    with open(vol, "r+b") as f:
        f.write(os.urandom(MiB))
    dirs = [chunks, *[p for p in chunks.rglob("*") if p.is_dir()]]
    made = subprocess.run(["chattr", "+i", *map(str, dirs)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {made.stderr!r}")
    try:
        failed = run(*BACKUP)
    finally:
        subprocess.run(["chattr", "-i", *map(str, dirs)], check=True)
    assert failed.code == ExitCode.FAILED
    lines = failed.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.err, failed
    assert f"cannot write '{chunks}/" in lines[0] and "Operation not permitted" in lines[0]
    assert _nothing_left(home) == []


@pytest.mark.timeout(120)
def test_a_gc_meeting_a_running_backup_exits_75_naming_it_alive(
    call: Call, env: dict[str, str], home: Path, vol: Path, tmp_path: Path
) -> None:
    """sleep holds a backup after its chunks are stored; gc and delete defer with exit 75."""
    assert call(*BACKUP).code == 0
    first = call("list", "--json").json()[0]["backup_id"]
    proc = subprocess.Popen(
        [*COMMAND, *BACKUP[:-1], "-v"],
        env={**env, ENV_VAR: "backup.transfer-done=sleep:6000"},
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        leases = home / "backups" / "leases"
        while not (leases.is_dir() and any(leases.iterdir())):
            assert time.monotonic() < deadline and proc.poll() is None, "no lease appeared"
            time.sleep(0.05)
        gc = call("gc", "--json")
        assert gc.code == ExitCode.DEFERRED and int(gc.code) == 75, gc
        (blocker,) = gc.json()["blockers"]
        assert blocker["state"] == "alive" and f"pid {proc.pid}" in blocker["owner"]
        text = call("gc")
        assert text.code == 75 and f"pid {proc.pid}, alive, renewed " in text.out, text
        deleted = call("delete", first)
        assert deleted.code == 75 and "deferred by runs in progress" in deleted.out, deleted
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert call("gc").code == 0


def test_help_of_gc_and_delete_documents_exit_75(call: Call) -> None:
    """The deferred exit code is in the epilog of the commands that return it."""
    for command in ("gc", "delete", "recover"):
        shown = call(command, "--help")
        assert shown.code == 0
        if command != "recover":
            assert "75   deferred: garbage collection did not run" in shown.out, shown
