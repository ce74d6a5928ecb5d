"""A new target volume that appears while a restore or replication runs is never replaced.

Without ``--overwrite`` a restore (or replication) checks first that its
target is free; it then reads the manifest (or takes a snapshot) and only
then opens the target for writing. A volume created in between (another
restore into the same new name, a careless operator, the same job's earlier
attempt) was taken by the driver's writer for a volume to replace: the run
replaced it and exited 0, and the other run's volume was gone. Each command
here is held at a failpoint after its check, the target is created, and the
command must then refuse with `VolumeExists` (exit 2), leaving the volume
that appeared as it was.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import COMMAND, MiB, Run, write_volume


def _run_while_target_appears(
    args: list[str], failpoint: str, marker: str, target: Path, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run `args` held 3 s at `failpoint`; once a file matches the glob `marker` (under
    `cwd`'s home), create `target` (1 MiB of 0x5a)."""
    proc = subprocess.Popen(
        [*COMMAND, *args],
        env={**env, "PIECEWORKS_FAILPOINTS": f"{failpoint}=sleep:3000"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    home = Path(env["PIECEWORKS_HOME"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(home.glob(marker)) and proc.poll() is None:
        time.sleep(0.02)
    assert any(home.glob(marker)), f"{marker} never appeared"
    assert not target.exists()
    target.write_bytes(b"\x5a" * MiB)  # inside the failpoint's 3 s: after the check
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_restore_does_not_replace_a_target_created_after_its_check(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    write_volume(home / "volumes", "vol-1", 8 * MiB)
    backup = run("backup", "--volume", "vol-1", "--json", "--quiet")
    assert backup.code == 0, backup
    backup_id = str(backup.json()["backup_id"])
    target = home / "volumes" / "vol-new"
    done = _run_while_target_appears(
        ["restore", backup_id, "--volume", "vol-new"],
        "restore.manifest-read",
        "backups/leases/read.*",  # the restore's read lease: its check is behind it
        target,
        env,
        tmp_path,
    )
    assert done.returncode == ExitCode.USAGE, (done.stdout, done.stderr)
    assert "volume 'vol-new' on backend 'local' (1048576 bytes) appeared after this restore" in (
        done.stderr
    ), done.stderr
    assert "it was not replaced" in done.stderr and "--overwrite" in done.stderr
    assert target.read_bytes() == b"\x5a" * MiB
    assert list((home / "volumes" / ".incoming").glob("*")) == []


def test_a_replication_does_not_replace_a_target_created_after_its_check(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    write_volume(home / "volumes", "vol-1", 8 * MiB)
    target = home / "volumes" / "vol-2"
    done = _run_while_target_appears(
        ["replicate", "--from-backend", "local", "--volume", "vol-1", "--to-backend", "local",
         "--to-volume", "vol-2", "--in-use"],
        "replicate.snapshot-created",
        "volumes/.snapshots/vol-1/*",
        target,
        env,
        tmp_path,
    )  # fmt: skip
    assert done.returncode == ExitCode.USAGE, (done.stdout, done.stderr)
    assert "volume 'vol-2' on backend 'local' (1048576 bytes) appeared after this replicate" in (
        done.stderr
    ), done.stderr
    assert target.read_bytes() == b"\x5a" * MiB
    snapshots = home / "volumes" / ".snapshots" / "vol-1"
    assert list(snapshots.iterdir()) == [], "the temporary snapshot was left behind"
