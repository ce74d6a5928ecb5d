"""A real backup in a pseudo-terminal draws the bar; Ctrl-C leaves no backup behind."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import COMMAND, MiB, Run, write_volume

# zlib (~40-100 MB/s here) over incompressible data makes a backup last seconds
# whatever the disk, so that several progress reports happen.
SLOW = ["--codec", "zlib"]


def test_backup_in_a_terminal_draws_a_progress_bar(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """On a tty, stderr gets a bar redrawn with \\r: percent, bytes, MB/s and time left."""
    write_volume(home / "volumes", "big", 96 * MiB)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [*COMMAND, "backup", "--volume", "big", *SLOW],
        env=env,
        cwd=tmp_path,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, screen.decode(errors="replace")
    text = screen.decode()
    frames = [f for f in text.split("\r") if f.startswith("backup big [")]
    assert len(frames) >= 3, text  # several redraws of one line
    assert "MB/s" in frames[-2] and "ETA " in frames[-2] and " / 96.0 MiB" in frames[-2]
    assert any("ETA 0:0" in f and " 0.0 MB/s" not in f for f in frames[1:-1]), (
        frames
    )  # a measured rate and a time left while running
    assert "100.0%  96.0 MiB / 96.0 MiB" in frames[-1]
    assert "\x1b[K" in text and "written to store 'local'" in text


@pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_sigint_or_sigterm_during_a_backup_exits_130_and_leaves_no_manifest(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    """Ctrl-C (or SIGTERM, as `kill` and service managers send, or SIGHUP, as a dropped ssh
    connection sends: they ended the process at once, leaving the lease, the run journal
    and the temporary snapshot) mid-transfer: exit 130, one
    message saying no backup was written and how many chunk objects remain; no manifest,
    no lease, no temporary snapshot, no run left in the journal; gc removes the chunks."""
    write_volume(home / "volumes", "big", 96 * MiB)
    proc = subprocess.Popen(
        [*COMMAND, "backup", "--volume", "big", "--in-use", "--chunk-size", "1MiB", *SLOW],
        # Held mid-transfer (zlib alone no longer makes it last: incompressible chunks
        # are sampled, not compressed whole), so the signal never comes after the end.
        env={**env, "PIECEWORKS_FAILPOINTS": "backup.chunk-stored=sleep:4000@40"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline:  # wait until chunks are being stored
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            seen += line
            if "MB/s" in line and " 0.0 MB/s" not in line:
                break
    chunks = home / "backups" / "chunks"
    assert chunks.exists() and any(chunks.rglob("*")), seen
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, (seen, out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("pieceworks: error: interrupted: no backup was written; "), err
    assert last.endswith(
        " chunk objects already stored will be reused by the next backup or removed by delete/gc"
    )
    left = int(last.split("written; ")[1].split()[0])
    assert left > 0 and "Traceback" not in err
    store = home / "backups"
    assert not (store / "manifests").exists() or not any((store / "manifests").iterdir())
    assert not list((store / "leases").glob("*")), "the backup's lease must be released"
    assert not list((home / "volumes" / ".snapshots").rglob("pw-*")), "snapshot left behind"
    journal = home / "journal"
    assert not journal.exists() or not [p for p in journal.rglob("*") if p.is_file()], (
        "the run is left in the journal"
    )
    gc = run("gc", "--json")
    assert gc.code == 0 and gc.json()["chunks_deleted"] == left, gc


def test_sigint_during_a_native_replication_leaves_no_partial_copy(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """Ctrl-C while the file driver copied a volume natively said "an uncommitted copy is
    discarded" and left the copy in ``.incoming`` (the writer was never aborted)."""
    write_volume(home / "volumes", "vol-1", 8 * MiB)
    proc = subprocess.Popen(
        [*COMMAND, "replicate", "--from-backend", "local", "--volume", "vol-1",
         "--to-backend", "local", "--to-volume", "vol-2"],
        env={**env, "PIECEWORKS_FAILPOINTS": "replicate.native-filled=sleep:30000"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    incoming = home / "volumes" / ".incoming"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (incoming.is_dir() and any(incoming.iterdir())):
        time.sleep(0.05)
    assert incoming.is_dir() and any(incoming.iterdir()), "the copy never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, (out, err)
    assert "the replication did not complete; volume 'vol-2'" in err, err
    assert list(incoming.iterdir()) == [], ("the partial copy was left behind", err)
    assert not (home / "volumes" / "vol-2").exists()


def test_a_backup_started_under_nohup_ignores_sighup(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A command started with SIGHUP ignored (``nohup``) keeps ignoring it: it is not
    stopped as SIGHUP now stops the others."""
    write_volume(home / "volumes", "vol-1", 4 * MiB)
    nohup = shutil.which("nohup")
    assert nohup is not None, "coreutils' nohup is needed"
    proc = subprocess.Popen(
        [nohup, *COMMAND, "backup", "--volume", "vol-1", "--in-use"],
        env={**env, "PIECEWORKS_FAILPOINTS": "backup.transfer-done=sleep:3000"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    snapshots = home / "volumes" / ".snapshots"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (snapshots.exists() and any(snapshots.rglob("pw-*"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert "written to store 'local'" in out
