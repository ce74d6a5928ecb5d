"""`LocalJournal`: the run journals of runs without a store, and `recover` over them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pieceworks.common_algorithms.backend import Backend
from pieceworks.common_algorithms.gc.journal import (
    TEMP_FILE_MARK,
    LocalJournal,
    default_journal_dir,
)
from pieceworks.common_algorithms.gc.recover import recover
from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import ConfigError, InvalidName, ISnapshot, VolumeRef


def _backend(tmp_path: Path) -> Backend:
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    (volumes / "vol").write_bytes(b"x" * 4096)
    return Backend.of("lab", FileDriver(volumes))


def test_a_journal_records_and_forgets_and_goes_with_its_last_entry(tmp_path: Path) -> None:
    journal = LocalJournal(tmp_path / "j")
    a = {"backend": "lab", "volume_id": "vol", "snapshot_id": "pw-a"}
    b = {"backend": "lab", "volume_id": "vol", "snapshot_id": "pw-b"}
    journal.record("op1", "replicate-op1", a)
    journal.record("op1", "replicate-op1", b)
    journal.record("op1", "replicate-op1", a)
    assert journal.entries("op1") == [a, b]
    journal.forget("op1", a)
    assert journal.entries("op1") == [b]
    journal.forget("op1", b)
    assert list((tmp_path / "j").iterdir()) == []
    with pytest.raises(InvalidName):
        journal.record("../escape", "x", a)


def test_default_journal_dir_follows_pieceworks_home(tmp_path: Path) -> None:
    assert default_journal_dir({"PIECEWORKS_HOME": str(tmp_path)}) == tmp_path / "journal"
    assert default_journal_dir({"HOME": str(tmp_path)}) == (
        tmp_path / ".local" / "share" / "pieceworks" / "journal"
    )


def test_recover_keeps_a_live_runs_journal_and_its_snapshot(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    snap = backend.use(ISnapshot).create_snapshot(VolumeRef("vol"), "pw-live")
    journal = LocalJournal(tmp_path / "j")
    journal.record(
        "live1",
        "replicate-live1",
        {"backend": "lab", "volume_id": "vol", "snapshot_id": snap.snapshot_id},
    )
    outcome = recover([], {"lab": backend}, journals=[journal])
    [item] = [i for i in outcome.items if i.kind == "run-journal"]
    assert item.action == "kept" and "owner runs" in item.reason
    assert journal.entries("live1")


def test_recover_removes_a_dead_runs_journal_snapshot_and_stray_file(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    snap = backend.use(ISnapshot).create_snapshot(VolumeRef("vol"), "pw-dead")
    journal = LocalJournal(tmp_path / "j")
    journal.record(
        "dead1",
        "replicate-dead1",
        {"backend": "lab", "volume_id": "vol", "snapshot_id": snap.snapshot_id},
    )
    path = journal.path("dead1")
    body = json.loads(path.read_text())
    body["pid"] = 2**22 + 11  # above pid_max: no such process
    path.write_text(json.dumps(body))
    stray = tmp_path / "j" / f".tmp-dead1-{2**22 + 11}"
    stray.write_text("{")
    dry = recover([], {"lab": backend}, journals=[journal], dry_run=True)
    assert dry.removed == 3 and path.exists() and stray.exists()
    outcome = recover([], {"lab": backend}, journals=[journal])
    assert outcome.removed == 3 and outcome.failed == 0, outcome
    assert list((tmp_path / "j").iterdir()) == []
    assert not any((tmp_path / "volumes" / ".snapshots").rglob("pw-*"))


def test_a_journal_naming_an_unconfigured_backend_is_kept(tmp_path: Path) -> None:
    journal = LocalJournal(tmp_path / "j")
    journal.record("gone1", "x", {"backend": "elsewhere", "volume_id": "v", "snapshot_id": "s"})
    path = journal.path("gone1")
    body = json.loads(path.read_text())
    body["pid"] = 2**22 + 12
    path.write_text(json.dumps(body))
    outcome = recover([], {}, journals=[journal])
    assert {(i.kind, i.action) for i in outcome.items} == {
        ("temporary-snapshot", "kept"),
        ("run-journal", "kept"),
    }
    assert path.exists()


def test_recover_removes_only_pieceworks_temporaries_a_journal_names(tmp_path: Path) -> None:
    """A dead run's journal naming some other file never makes recover delete it."""
    journal = LocalJournal(tmp_path / "j")
    precious = tmp_path / "precious.img"
    precious.write_bytes(b"x")
    temp = tmp_path / f".out.img{TEMP_FILE_MARK}0123456789ab"
    temp.write_bytes(b"x")
    journal.record("dead2", "restore-to-file", {"file": str(precious)})
    journal.record("dead2", "restore-to-file", {"file": str(temp)})
    path = journal.path("dead2")
    body = json.loads(path.read_text())
    body["pid"] = 2**22 + 13
    path.write_text(json.dumps(body))
    outcome = recover([], {}, journals=[journal])
    assert precious.exists() and not temp.exists()
    assert path.exists()  # it still names a file recover would not remove
    assert {(i.name, i.action) for i in outcome.items if i.kind == "temporary-file"} == {
        (str(precious), "kept"),
        (str(temp), "removed"),
    }


def test_the_journal_directory_of_an_unknown_users_home_is_a_configuration_error() -> None:
    """`default_journal_dir` (used by workers and `recover` outside the command line's
    checks) raised "RuntimeError: Could not determine home directory"
    for ``PIECEWORKS_HOME=~nouser/h``."""
    with pytest.raises(ConfigError, match=r"PIECEWORKS_HOME ~no-such-user-pw/h: cannot expand"):
        default_journal_dir({"PIECEWORKS_HOME": "~no-such-user-pw/h"})
    assert default_journal_dir({"PIECEWORKS_HOME": "/srv/pw"}) == Path("/srv/pw/journal")
