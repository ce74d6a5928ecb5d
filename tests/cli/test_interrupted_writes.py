"""Ctrl-C or SIGTERM in a restore or a replication: what the message says is what is left.

Each command is held at a failpoint (``sleep``), then stopped with SIGTERM
(the same path as Ctrl-C): the volume it writes, its temporary snapshot and
its run journal are then looked at directly and compared with the message.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import COMMAND, MiB, Run, write_volume


def _stopped_at(
    failpoint: str, args: list[str], env: dict[str, str], cwd: Path, marker: Path
) -> str:
    """Run `args` held 30 s at `failpoint`, SIGTERM it once `marker` appeared; its stderr."""
    proc = subprocess.Popen(
        [*COMMAND, *args],
        env={**env, "PIECEWORKS_FAILPOINTS": f"{failpoint}=sleep:30000"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not marker.exists():
        time.sleep(0.05)
    assert marker.exists(), f"{marker} never appeared"
    time.sleep(0.5)  # inside the failpoint's sleep
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, (out, err)
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def _backup(run: Run, home: Path) -> str:
    write_volume(home / "volumes", "vol-1", 8 * MiB)
    result = run("backup", "--volume", "vol-1", "--json", "--quiet")
    assert result.code == 0, result
    return str(result.json()["backup_id"])


def test_a_restore_stopped_after_its_commit_says_the_new_volume_is_whole(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """Stopped after the commit, a restore into a new volume said the volume 'was not
    replaced (an uncommitted restore is discarded)' while the volume stood there, whole."""
    backup_id = _backup(run, home)
    target = home / "volumes" / "vol-new"
    last = _stopped_at(
        "restore.committed", ["restore", backup_id, "--volume", "vol-new"], env, tmp_path, target
    )
    assert "was not replaced" not in last and "discarded" not in last, last
    assert "volume 'vol-new'" in last and "completed" in last, last
    assert target.read_bytes() == (home / "volumes" / "vol-1").read_bytes()


def test_a_restore_stopped_before_its_commit_says_no_volume_was_made(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """Stopped while writing, a restore into a new volume leaves none and says so."""
    backup_id = _backup(run, home)
    incoming = home / "volumes" / ".incoming"
    last = _stopped_at(
        "restore.chunk-written",
        ["restore", backup_id, "--volume", "vol-new"],
        env,
        tmp_path,
        incoming,
    )
    assert "did not complete" in last and "vol-new" in last, last
    assert not (home / "volumes" / "vol-new").exists()
    assert list(incoming.iterdir()) == []


def test_an_overwriting_restore_stopped_after_its_commit_does_not_claim_the_old_volume(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """With --overwrite, stopped after the commit: the volume holds the backup; the message
    said it 'was not replaced'. It now says the volume is whole, old or new, never a mix."""
    backup_id = _backup(run, home)
    volume = home / "volumes" / "vol-1"
    volume.write_bytes(b"\x07" * MiB)  # differs from the backup
    journal = home / "volumes" / ".incoming"
    last = _stopped_at(
        "restore.committed",
        ["restore", backup_id, "--volume", "vol-1", "--overwrite"],
        env,
        tmp_path,
        journal,
    )
    assert "was not replaced" not in last, last
    assert "volume 'vol-1'" in last and "never a mix" in last, last
    assert volume.stat().st_size == 8 * MiB  # it was replaced


@pytest.mark.parametrize("failpoint", ["replicate.snapshot-created", "replicate.native-filled"])
def test_a_replication_stopped_midway_deletes_its_temporary_snapshot(
    env: dict[str, str], home: Path, tmp_path: Path, failpoint: str
) -> None:
    """A replication of an in-use volume stopped halfway left its temporary snapshot
    (``.snapshots/vol-1/pw-rp-...``) and its run journal (``runs/rp-...``) for `recover`,
    though a stopped backup removes its own at once; now they go and the message says so."""
    write_volume(home / "volumes", "vol-1", 8 * MiB)
    snapshots = home / "volumes" / ".snapshots" / "vol-1"
    incoming = home / "volumes" / ".incoming"
    marker = snapshots if failpoint == "replicate.snapshot-created" else incoming
    last = _stopped_at(
        failpoint,
        ["replicate", "--from-backend", "local", "--volume", "vol-1", "--to-backend", "local",
         "--to-volume", "vol-2", "--in-use"],
        env,
        tmp_path,
        marker,
    )  # fmt: skip
    assert "did not complete" in last and "temporary snapshot" in last, last
    assert list(snapshots.iterdir()) == [], "the temporary snapshot was left behind"
    runs = home / "backups" / "runs"
    assert not runs.exists() or list(runs.iterdir()) == [], "the run journal was left behind"
    assert not (home / "volumes" / "vol-2").exists()


def test_a_replication_stopped_after_its_commit_says_the_copy_is_whole(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """Stopped once the copy was committed (its snapshot being deleted), a replication into
    a new volume said the volume 'was not replaced (an uncommitted copy is discarded)'."""
    write_volume(home / "volumes", "vol-1", 8 * MiB)
    target = home / "volumes" / "vol-2"
    last = _stopped_at(
        "replicate.snapshot-deleted",
        ["replicate", "--from-backend", "local", "--volume", "vol-1", "--to-backend", "local",
         "--to-volume", "vol-2", "--in-use"],
        env,
        tmp_path,
        target,
    )  # fmt: skip
    assert "discarded" not in last and "completed" in last and "vol-2" in last, last
    assert target.read_bytes() == (home / "volumes" / "vol-1").read_bytes()
    recover = run("recover", "--json")
    assert recover.code == 0, recover
    assert [i for i in json.loads(recover.out)["items"] if i["action"] == "removed"] == []


def test_a_copy_stopped_midway_says_what_the_target_holds(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A copy stopped halfway said only 'interrupted'; it now says that the target holds
    only complete backups and that running it again finishes the copy, which it does."""
    config = tmp_path / "two-stores.toml"
    config.write_text(
        f'[backends.local]\ndriver = "file"\npath = "{home / "volumes"}"\n'
        f'[stores.local]\ndriver = "posix"\npath = "{home / "backups"}"\n'
        f'[stores.offsite]\ndriver = "posix"\npath = "{tmp_path / "offsite"}"\n'
    )
    both = {**env, "PIECEWORKS_CONFIG": str(config)}
    write_volume(home / "volumes", "vol-1", 8 * MiB)
    backup = run("backup", "--volume", "vol-1", "--store", "local", "--json", env=both)
    assert backup.code == 0, backup
    chunks = tmp_path / "offsite" / "chunks"
    last = _stopped_at(
        "copy.chunk-copied",
        ["copy", "--from-store", "local", "--to-store", "offsite"],
        both,
        tmp_path,
        chunks,
    )
    assert "store 'offsite' is complete there" in last and "run the same copy again" in last
    manifests = tmp_path / "offsite" / "manifests"
    assert not manifests.exists() or list(manifests.iterdir()) == []
    again = run("copy", "--from-store", "local", "--to-store", "offsite", "--json", env=both)
    assert again.code == 0 and again.json()["copied_backup_ids"] == [backup.json()["backup_id"]], (
        again
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_restore_on_the_parallel_engine_stops_when_told_and_makes_no_volume(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """The parallel engine runs tasks on a thread pool and waits for them as the interrupt
    unwinds: a stopped restore ran on to its end and committed the volume (and said either
    'had completed before the interrupt' or, worse, that no volume was made). Now its data
    path stops at the next chunk: exit 130 at once, no volume, and the message says so."""
    config = tmp_path / "pieceworks.toml"
    config.write_text('[engine]\nengine = "parallel"\n')
    write_volume(home / "volumes", "vol-1", 8 * MiB)
    made = run("--config", str(config), "backup", "--volume", "vol-1", "--chunk-size", "1MiB")
    assert made.code == 0, made
    [backup_id] = [m["backup_id"] for m in run("list", "--json").json()]
    proc = subprocess.Popen(
        [*COMMAND, "--config", str(config), "restore", backup_id, "--volume", "vol-new"],
        env={**env, "PIECEWORKS_FAILPOINTS": "restore.chunk-written=sleep:1500"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    incoming = home / "volumes" / ".incoming"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (incoming.exists() and any(incoming.iterdir())):
        time.sleep(0.05)
    time.sleep(0.5)
    stopped = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - stopped
    assert proc.returncode == ExitCode.INTERRUPTED, (out, err)
    assert took < 4, f"the restore ran on for {took:.1f} s after the signal (8 chunks x 1.5 s)"
    last = err.strip().splitlines()[-1]
    assert "did not complete" in last and "vol-new" in last, last
    time.sleep(2)  # nothing left running commits it later
    assert not (home / "volumes" / "vol-new").exists()


def test_a_restore_failing_just_before_its_commit_leaves_nothing_incoming(
    run: Run, env: dict[str, str], home: Path
) -> None:
    """The ``restore.before-commit`` point sat outside the code that aborts the writer: a
    failure there left ``.incoming/vol-new.*`` (the whole volume's data) until `recover`."""
    backup_id = _backup(run, home)
    failed = run(
        "restore",
        backup_id,
        "--volume",
        "vol-new",
        env={**env, "PIECEWORKS_FAILPOINTS": "restore.before-commit=raise"},
    )
    assert failed.code != 0 and "restore.before-commit" in failed.err, failed
    assert not (home / "volumes" / "vol-new").exists()
    assert list((home / "volumes" / ".incoming").iterdir()) == []


@pytest.mark.parametrize("engine", ["serial", "parallel"])
def test_a_restore_stopped_just_before_its_commit_makes_no_volume(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path, engine: str
) -> None:
    """SIGTERM with every chunk written but the volume not yet committed: the serial engine
    left ``.incoming/vol-new.*`` behind; the parallel one (whose task thread the signal does
    not reach) went on to commit the volume. Both now discard it and exit 130."""
    config = tmp_path / "engine.toml"
    config.write_text(f'[engine]\nengine = "{engine}"\npersistence = "memory://"\n')
    e = {**env, "PIECEWORKS_CONFIG": str(config)}
    backup_id = _backup(run, home)
    incoming = home / "volumes" / ".incoming"
    hold = 30000 if engine == "serial" else 3000  # the parallel engine waits for its thread
    proc = subprocess.Popen(
        [*COMMAND, "restore", backup_id, "--volume", "vol-new"],
        env={**e, "PIECEWORKS_FAILPOINTS": f"restore.before-commit=sleep:{hold}"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _written(incoming, 8 * MiB):
        time.sleep(0.05)
    assert _written(incoming, 8 * MiB), "the restore never wrote its volume"
    time.sleep(0.5)  # inside the failpoint's sleep
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, (out, err)
    assert "Traceback" not in err, err
    assert "did not complete" in err.strip().splitlines()[-1], err
    time.sleep(0.5)
    assert not (home / "volumes" / "vol-new").exists()
    assert list(incoming.iterdir()) == []


def _written(incoming: Path, size: int) -> bool:
    """Whether a file in `incoming` has `size` bytes of data on disk (not holes)."""
    try:
        return any(p.stat().st_blocks * 512 >= size for p in incoming.iterdir())
    except OSError:  # not there yet, or renamed meanwhile
        return False
