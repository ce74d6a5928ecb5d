"""``diff --all-volumes --json`` names both volumes and both backends.

The document had one ``volume_id`` (ID1's) whatever ID2's volume was, and no
backend: a script comparing two volumes could not tell from the output
what it compared. ``volume_b_id``, ``backend_a`` and ``backend_b`` say it
(``volume_b_id`` equals ``volume_id`` for two backups of one volume).
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Run, write_volume

KiB = 1024


def test_diff_of_two_volumes_names_both(run: Run, home: Path) -> None:
    write_volume(home / "volumes", "vol-a", 256 * KiB, seed=1)
    write_volume(home / "volumes", "vol-b", 512 * KiB, seed=2)
    ids = []
    for volume in ("vol-a", "vol-b", "vol-a"):
        made = run("backup", "--volume", volume, "--json", "-q")
        assert made.code == 0, made
        ids.append(made.json()["backup_id"])
    two = run("diff", ids[0], ids[1], "--all-volumes", "--json")
    assert two.code == 0, two
    doc = two.json()
    assert (doc["volume_id"], doc["volume_b_id"]) == ("vol-a", "vol-b"), doc
    assert (doc["backend_a"], doc["backend_b"]) == ("local", "local"), doc
    one = run("diff", ids[0], ids[2], "--json").json()
    assert one["volume_id"] == one["volume_b_id"] == "vol-a" and one["identical"], one
