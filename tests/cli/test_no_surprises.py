"""Restore and replicate never destroy by surprise; an empty or blank id is refused everywhere.

The findings: ``restore ID --volume ""`` restored over the source volume,
and a restore onto an existing volume replaced it (an 8 MiB volume silently
became 10 bytes, and its mode changed).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.parser import build_parser
from pieceworks.common_algorithms import ReplicateRequest, RestoreRequest
from pieceworks.protocols import InvalidName
from tests.cli.conftest import Call, MiB, Run, RunAll, config_file, write_volume

#: Every command line that takes an id, with ``{}`` where the id goes.
ID_ARGUMENTS = [
    ["backup", "--volume", "{}"],
    ["restore", "{}"],
    ["restore", "bk-1", "--volume", "{}"],
    ["verify", "{}"],
    ["delete", "{}"],
    ["list", "--volume", "{}"],
    ["list", "--backend", "{}"],
    ["list", "--store", "{}"],
    ["plan", "backup", "--volume", "{}"],
    ["plan", "restore", "{}"],
    ["plan", "restore", "bk-1", "--volume", "{}"],
    ["replicate", "--from-backend", "{}", "--volume", "v", "--to-backend", "b"],
    ["replicate", "--from-backend", "a", "--volume", "{}", "--to-backend", "b"],
    ["replicate", "--from-backend", "a", "--volume", "v", "--to-backend", "{}"],
    ["replicate", "--from-backend", "a", "--volume", "v", "--to-backend", "b", "--to-volume", "{}"],
    ["replicate", "--from-backend", "a", "--volume", "v", "--to-backend", "b", "--snapshot", "{}"],
    ["plan", "replicate", "--from-backend", "a", "--volume", "v", "--to-backend", "b",
     "--to-volume", "{}"],
]  # fmt: skip


def _tiny_backup(call: Call, home: Path) -> str:
    (home / "volumes").mkdir(parents=True, exist_ok=True)
    (home / "volumes" / "tiny").write_bytes(b"0123456789")
    made = call("backup", "--volume", "tiny", "--json")
    assert made.code == ExitCode.OK, made
    return str(made.json()["backup_id"])


@pytest.mark.parametrize("blank", ["", " ", "\t", "  \n"])
@pytest.mark.parametrize("argv", ID_ARGUMENTS, ids=" ".join)
def test_an_empty_or_blank_id_is_a_usage_error_before_anything_runs(
    argv: list[str], blank: str, call: Call, home: Path
) -> None:
    """Exit 2 from the parser, naming what must not be empty; nothing is created."""
    result = call(*[blank if a == "{}" else a for a in argv])
    assert result.code == ExitCode.USAGE, result
    assert "must not be empty or blank" in result.err, result
    assert not home.exists()  # the configuration was never even read


def test_restore_with_an_empty_volume_never_writes_onto_the_source(call: Call, home: Path) -> None:
    """The finding: ``--volume ""`` fell back to the backup's own volume and replaced it."""
    backup_id = _tiny_backup(call, home)
    (home / "volumes" / "tiny").write_bytes(b"changed since the backup")
    result = call("restore", backup_id, "--volume", "")
    assert result.code == ExitCode.USAGE, result
    assert (home / "volumes" / "tiny").read_bytes() == b"changed since the backup"


def test_restore_refuses_to_replace_a_volume_and_says_sizes_when_asked(
    call: Call, home: Path
) -> None:
    """The finding: an 8 MiB volume silently became 10 bytes (and its mode changed)."""
    backup_id = _tiny_backup(call, home)
    big = write_volume(home / "volumes", "big", 8 * MiB)
    big.chmod(0o640)
    before = big.read_bytes()

    refused = call("restore", backup_id, "--volume", "big")
    assert refused.code == ExitCode.USAGE, refused
    assert "volume 'big' already exists" in refused.err and "8388608 bytes" in refused.err
    assert "--overwrite" in refused.err
    assert big.read_bytes() == before and stat.S_IMODE(big.stat().st_mode) == 0o640

    replaced = call("restore", backup_id, "--volume", "big", "--overwrite")
    assert replaced.code == ExitCode.OK, replaced
    assert "replacing it (old size 8.0 MiB, new size 10 B)" in replaced.out
    assert big.read_bytes() == b"0123456789"
    as_json = call("restore", backup_id, "--volume", "big", "--overwrite", "--json").json()
    assert as_json["replaced_size"] == 10 and as_json["size"] == 10


def test_restore_without_volume_creates_a_new_volume_and_prints_its_name(
    call: Call, home: Path
) -> None:
    """The source stays as it is; each restore gets a fresh name."""
    backup_id = _tiny_backup(call, home)
    (home / "volumes" / "tiny").write_bytes(b"the source, changed")
    first = call("restore", backup_id)
    assert first.code == ExitCode.OK, first
    name = f"tiny-from-{backup_id}"
    assert f"into new volume '{name}'" in first.out
    assert (home / "volumes" / name).read_bytes() == b"0123456789"
    second = call("restore", backup_id, "--json")
    assert second.code == ExitCode.OK, second
    assert second.json()["volume_id"] == f"{name}-2" and second.json()["replaced_size"] is None
    assert (home / "volumes" / "tiny").read_bytes() == b"the source, changed"

    onto_source = call("restore", backup_id, "--volume", "tiny")
    assert onto_source.code == ExitCode.USAGE, onto_source
    named = call("restore", backup_id, "--volume", "tiny", "--overwrite")
    assert named.code == ExitCode.OK, named
    assert (home / "volumes" / "tiny").read_bytes() == b"0123456789"


def test_replicate_refuses_to_replace_a_volume_unless_overwrite(
    call: Call, tmp_path: Path, env: dict[str, str]
) -> None:
    """An existing target on the other backend is kept; --overwrite replaces it and says sizes."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_volume(a, "vol", 1 * MiB)
    (b).mkdir()
    (b / "vol").write_bytes(b"precious")
    cfg = config_file(
        tmp_path,
        f"""
[backends.a]
driver = "file"
path = "{a}"
[backends.b]
driver = "file"
path = "{b}"
[stores.s]
driver = "posix"
path = "{tmp_path / "store"}"
[engine]
persistence = "memory://"
""",
    )
    e = {**env, "PIECEWORKS_CONFIG": str(cfg)}
    args = ["replicate", "--from-backend", "a", "--volume", "vol", "--to-backend", "b"]
    refused = call(*args, env=e)
    assert refused.code == ExitCode.USAGE, refused
    assert "volume 'vol' already exists on backend 'b' (8 bytes)" in refused.err
    assert (b / "vol").read_bytes() == b"precious"
    fresh = call(*args, "--to-volume", "copy", env=e)
    assert fresh.code == ExitCode.OK, fresh
    assert (b / "copy").read_bytes() == (a / "vol").read_bytes()
    replaced = call(*args, "--overwrite", env=e)
    assert replaced.code == ExitCode.OK, replaced
    assert "replacing it (old size 8 B, new size 1.0 MiB)" in replaced.out
    assert (b / "vol").read_bytes() == (a / "vol").read_bytes()


def test_every_id_option_of_the_parser_is_checked() -> None:
    """No option or argument that names an id is left without the id check."""
    parser = build_parser()
    unchecked: list[str] = []

    def walk(p: object, path: str) -> None:
        for action in getattr(p, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, sub in choices.items():
                    walk(sub, f"{path} {name}")
                continue
            names = [*action.option_strings, action.dest]
            if any(n.lstrip("-").replace("-", "_") in _ID_DESTS for n in names) and (
                action.type is None
            ):
                unchecked.append(f"{path} {names[0]}")

    walk(parser, "pieceworks")
    assert unchecked == []


_ID_DESTS = {
    "volume",
    "to_volume",
    "snapshot",
    "backup_id",
    "backend",
    "store",
    "from_backend",
    "to_backend",
}


def test_the_api_refuses_an_empty_target_too() -> None:
    """ReplicateRequest(target_volume_id="") is refused, not read as "same as the source"."""

    with pytest.raises(InvalidName):
        ReplicateRequest("vol", target_volume_id="")
    with pytest.raises(InvalidName):
        RestoreRequest("bk-1", "")
    assert ReplicateRequest("vol").target_volume == "vol"
    assert not RestoreRequest("bk-1", "v").overwrite


def test_two_restores_into_one_new_volume_never_replace_each_other(
    run: Run, run_all: RunAll, env: dict[str, str], home: Path
) -> None:
    """Two restores of different backups into one new name both said "restored"; the
    second silently replaced the first's volume (no --overwrite). The second to commit
    now fails (exit 2, volume-exists) and the first's volume stays."""
    write_volume(home / "volumes", "a", MiB, seed=1)
    write_volume(home / "volumes", "b", MiB, seed=2)
    first = run("backup", "--volume", "a", "--json", env=env).json()["backup_id"]
    second = run("backup", "--volume", "b", "--json", env=env).json()["backup_id"]
    # Both pass the check that the volume does not exist, then hold before committing.
    soon = {**env, "PIECEWORKS_FAILPOINTS": "restore.before-commit=sleep:2000"}
    later = {**env, "PIECEWORKS_FAILPOINTS": "restore.before-commit=sleep:5000"}
    done = run_all(
        [(["restore", first, "--volume", "new", "--json"], soon),
         (["restore", second, "--volume", "new", "--json"], later)]
    )  # fmt: skip
    assert sorted(d.code for d in done) == [0, ExitCode.USAGE], done  # either may win
    won, lost = ("a", done[1]) if done[0].code == 0 else ("b", done[0])
    assert "was created by another run while this one wrote it" in lost.err, done
    assert (home / "volumes" / "new").read_bytes() == (home / "volumes" / won).read_bytes()
    assert not any((home / "volumes" / ".incoming").iterdir())
