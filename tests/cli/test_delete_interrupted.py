"""``delete ID`` stopped by SIGTERM after its manifest went says the backup was deleted.

It said "backup ... may or may not be deleted (see `pieceworks list`)",
sending the user to ``list`` for what one request to the store answers.
Now the store is asked: deleted (garbage collection stopped, the next
prune removes the rest), or not deleted; only when the store cannot tell
does the old sentence stay.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.cli.conftest import COMMAND, Run, write_volume

KiB = 1024


def test_an_interrupt_after_the_manifest_went_says_the_backup_was_deleted(
    run: Run, home: Path, env: dict[str, str]
) -> None:
    write_volume(home / "volumes", "vol-1", 256 * KiB)
    made = run("backup", "--volume", "vol-1", "--json", "-q")
    assert made.code == 0, made
    backup_id = made.json()["backup_id"]
    manifest = home / "backups" / "manifests" / f"{backup_id}.json"
    assert manifest.exists()
    proc = subprocess.Popen(
        [*COMMAND, "delete", backup_id, "--json"],
        env={**env, "PIECEWORKS_FAILPOINTS": "delete.manifest-removed=sleep:20000"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while manifest.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert not manifest.exists(), "the manifest was not removed in time"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and out == "", (proc.returncode, out, err)
    doc = json.loads(err.strip().splitlines()[-1])
    assert doc["reference"] == "interrupted", doc
    assert doc["message"].startswith(f"interrupted: backup {backup_id} was deleted;"), doc
    assert "may or may not" not in doc["message"], doc
