"""``-`` where a file is written (``restore --to-file -``, ``conductor --events -``): refused.

``-`` is the usual name of standard output (``tar -f -``, ``curl -o -``); a
user who typed it wanted the volume in a pipe, and found a file instead.
Restore writes a file or a block device: ``-`` is a usage error before
anything is read, and ``./-`` still names a file called ``-``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Run, write_volume

KiB = 1024


def test_restore_to_dash_is_a_usage_error(run: Run, home: Path, tmp_path: Path) -> None:
    write_volume(home / "volumes", "vol-1", 256 * KiB)
    made = run("backup", "--volume", "vol-1", "--json", "-q")
    assert made.code == 0, made
    backup_id = made.json()["backup_id"]
    done = run("restore", backup_id, "--to-file", "-", "--json")
    assert done.code == 2 and done.out == "", done
    doc = json.loads(done.err.strip().splitlines()[-1])
    assert doc["reference"] == "usage-error" and "standard output" in doc["message"], doc
    assert not (tmp_path / "-").exists()
    named = run("restore", backup_id, "--to-file", "./-")
    assert named.code == 0, named
    assert (tmp_path / "-").read_bytes() == (home / "volumes" / "vol-1").read_bytes()


def test_conductor_events_to_dash_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    """``conductor --events -`` made an empty file called ``-``; /dev/stdout is the way."""
    nowhere = ("--jobboard", "redis://127.0.0.1:1/x", "--persistence", "postgresql://127.0.0.1:1/x")
    done = run("conductor", *nowhere, "--max-dispatches", "0", "--events", "-", "--json")
    assert done.code == 2, done
    doc = json.loads(done.err.strip().splitlines()[-1])
    assert doc["reference"] == "usage-error" and "/dev/stdout" in doc["message"], doc
    assert not (tmp_path / "-").exists()
