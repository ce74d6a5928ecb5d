"""A backup id given short (restic's habit) is not found, and the error says what it starts.

pieceworks takes backup ids whole: ``show 7dc11612`` or ``delete bk-7dc1``
resolve nothing (a prefix that is unique today is ambiguous tomorrow, and
``delete`` must not guess). The error said only ``no backup 'bk-7dc1' in
the store (no object manifests/bk-7dc1.json)``; it now names the backup the
text is the start of, or how many and the first few, so the user can give
the whole id. Nothing else changes: exit 3, ``backup-not-found``, and
nothing is deleted or written.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Run, write_volume

MiB = 1024 * 1024


def _two_backups(run: Run, home: Path) -> list[str]:
    write_volume(home / "volumes", "vol-1", MiB)
    ids = []
    for _ in range(2):
        made = run("backup", "--volume", "vol-1", "--json", "-q")
        assert made.code == 0, made
        ids.append(made.json()["backup_id"])
    return ids


def test_a_short_id_is_not_found_and_the_error_names_the_whole_id(run: Run, home: Path) -> None:
    first, second = _two_backups(run, home)
    short = first.removeprefix("bk-")[:8]
    shown = run("show", short)
    assert shown.code == 3 and shown.out == "", shown
    assert f"'{short}' is the start of {first}: give the whole id" in shown.err, shown
    as_json = run("verify", first[:7].upper(), "--json")
    assert as_json.code == 3 and as_json.out == "", as_json
    doc = json.loads(as_json.err.strip().splitlines()[-1])
    assert doc["reference"] == "backup-not-found" and first in doc["message"], doc
    restored = run("restore", first[:9], "--to-file", str(home.parent / "r.img"))
    assert restored.code == 3 and first in restored.err, restored
    assert not (home.parent / "r.img").exists()
    compared = run("diff", first, second[:8])
    assert compared.code == 3 and f"is the start of {second}" in compared.err, compared


def test_an_ambiguous_short_id_names_how_many_backups_it_starts(run: Run, home: Path) -> None:
    ids = _two_backups(run, home)
    shown = run("show", "bk-")
    assert shown.code == 3, shown
    assert f"'bk-' is the start of 2 backups ({', '.join(sorted(ids))}): give" in shown.err, shown


def test_delete_with_a_short_id_deletes_nothing_and_names_the_whole_id(
    run: Run, home: Path
) -> None:
    first, second = _two_backups(run, home)
    for argv in ([first[:8]], [first[:8], second]):
        done = run("delete", *argv, "--json")
        assert done.code == 3 and done.out == "", done
        doc = json.loads(done.err.strip().splitlines()[-1])
        assert doc["reference"] == "backup-not-found", doc
        assert f"'{first[:8]}' is the start of {first}" in doc["message"], doc
    listed = run("list", "--json")
    assert sorted(r["backup_id"] for r in listed.json()) == sorted([first, second]), listed


def test_an_id_that_starts_no_backup_gets_no_note(run: Run, home: Path) -> None:
    _two_backups(run, home)
    shown = run("show", "bk-nosuch")
    assert shown.code == 3, shown
    assert shown.err.strip().endswith("(no object manifests/bk-nosuch.json)"), shown
