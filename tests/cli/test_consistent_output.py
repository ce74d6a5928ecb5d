"""One vocabulary across commands: delete of several ids, ``plan -o`` in every format,
configuration values of the wrong type, and ``list`` filters and labels.

Each was broken before: ``delete`` took one id, ``plan --json -o FILE`` wrote
no file, ``path = 5`` gave a Python message without the key, ``list --json``
said ``id``/``volume``/``stored_bytes`` where ``backup --json`` says
``backup_id``/``volume_id``/``bytes_stored``.
"""

from __future__ import annotations

import json
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Run, RunAll, config_file, has_dot
from tests.support.backups import make_backup, set_created

KiB = 1024


def test_delete_several_ids_checks_all_first_then_collects_once(
    run: Run, run_all: RunAll, home: Path
) -> None:
    a, b, c = (make_backup(home, "vol-1", seed=i).backup_id for i in range(3))
    unknown, bad = run_all(
        timeout=300,
        commands=[["delete", a, "bk-nosuchbackup"], ["delete", a, "../up"]],
    )
    assert unknown.code == ExitCode.NOT_FOUND, unknown
    assert "bk-nosuchbackup" in unknown.err and "nothing was deleted" in unknown.err
    assert bad.code == ExitCode.USAGE, bad
    several = run("delete", a, b, a, "--json")
    assert several.code == 0, several
    doc = several.json()
    assert doc["backup_ids"] == [a, b] and doc["chunks_deleted"] == 8, doc
    assert doc["bytes_freed"] > 0 and doc["deferred_by"] == []
    remaining = run("list", "--json")
    assert [r["backup_id"] for r in remaining.json()] == [c]
    one = run("delete", c, "--json")
    assert one.code == 0 and one.json()["backup_id"] == c, one


def test_plan_output_file_is_written_for_every_format(
    run_all: RunAll, home: Path, tmp_path: Path
) -> None:
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "vol-1").write_bytes(b"x" * 4096)
    formats = ["text", "json", "dot", *(["svg"] if has_dot() else [])]
    commands: list[list[str]] = [
        ["plan", "backup", "--volume", "vol-1", "--format", f, "-o", str(tmp_path / f"p.{f}")]
        for f in formats
    ]
    commands.append(
        ["plan", "backup", "--volume", "vol-1", "--json", "-o", str(tmp_path / "flag.json")]
    )
    commands.append(
        ["plan", "backup", "--volume", "vol-1", "--json", "-o", str(tmp_path / "no" / "x")]
    )
    *results, unwritable = run_all(timeout=300, commands=commands)
    for r in results:
        assert r.code == 0 and r.out == "", r
        assert "wrote the" in r.err
    assert json.loads((tmp_path / "p.json").read_text())["chosen"] == "direct-stream"
    assert json.loads((tmp_path / "flag.json").read_text())["operation"] == "backup"
    assert "direct-stream" in (tmp_path / "p.text").read_text()
    assert (tmp_path / "p.dot").read_text().startswith("digraph")
    assert unwritable.code == ExitCode.USAGE and "cannot write the plan" in unwritable.err


def test_a_configuration_value_of_the_wrong_type_names_the_section_and_key(
    run_all: RunAll, tmp_path: Path
) -> None:
    bad_backend = config_file(
        tmp_path, '[backends.lab]\ndriver = "file"\npath = 5\n', "backend.toml"
    )
    bad_store = config_file(
        tmp_path, '[stores.vault]\ndriver = "posix"\npath = true\n', "store.toml"
    )
    secret = config_file(
        tmp_path,
        '[stores.s]\ndriver = "swift"\nauth_url = "http://x"\nuser = "u"\n'
        'key = 12345\ncontainer = "c"\n',
        "secret.toml",
    )
    backend, store, masked = run_all(
        timeout=300,
        commands=[
            ["--config", str(bad_backend), "volumes"],
            ["--config", str(bad_store), "list"],
            ["--config", str(secret), "list"],
        ],
    )
    assert backend.code == ExitCode.USAGE, backend
    assert f"{bad_backend} [backends.lab]: option 'path' must be a string, not an integer" in (
        backend.err
    )
    assert store.code == ExitCode.USAGE, store
    assert "[stores.vault]: option 'path' must be a string, not a boolean" in store.err
    assert masked.code == ExitCode.USAGE, masked
    assert "option 'key' must be a string, not an integer" in masked.err
    assert "12345" not in masked.err


def test_list_filters_and_labels_in_text_and_json(run: Run, run_all: RunAll, home: Path) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    old = make_backup(home, "vol-1", labels={"env": "prod"}).backup_id
    set_created(home, old, datetime(2026, 1, 10, tzinfo=UTC))
    new = make_backup(home, "vol-1", seed=1, labels={"env": "test", "k": "v"}).backup_id
    other = make_backup(home, "vol-2", seed=2).backup_id
    by_label, by_volume, since, until, strategy, none, text, bad_time = run_all(
        timeout=300,
        commands=[
            ["list", "--label", "env=prod", "--json"],
            ["list", "--volume", "vol-2", "--volume", "vol-1", "--json"],
            ["list", "--since", "2026-02-01", "--json"],
            ["list", "--until", "2026-01-11T00:00:00Z", "--json"],
            ["list", "--strategy", "snapshot-stream", "--json"],
            ["list", "--label", "env=nowhere"],
            ["list"],
            ["list", "--since", "yesterday-ish"],
        ],
    )
    assert [r["backup_id"] for r in by_label.json()] == [old], by_label
    row = by_label.json()[0]
    assert row["labels"] == {"env": "prod"} and row["volume_id"] == "vol-1"
    assert set(row) >= {"backup_id", "volume_id", "bytes_stored", "bytes_referenced", "created"}
    assert row["created"] == datetime(2026, 1, 10, tzinfo=UTC).timestamp()
    assert {r["backup_id"] for r in by_volume.json()} == {old, new, other}
    assert {r["backup_id"] for r in since.json()} == {new, other}
    assert [r["backup_id"] for r in until.json()] == [old]
    assert strategy.json() == []
    assert none.code == 0 and "match the filters" in none.err, none
    assert "env=test,k=v" in text.out and "labels" in text.out.splitlines()[0]
    assert bad_time.code == ExitCode.USAGE and "invalid time 'yesterday-ish'" in bad_time.err
    bad_label = run("backup", "--volume", "vol-1", "--label", "=x")
    assert bad_label.code == ExitCode.USAGE and "invalid label '=x'" in bad_label.err
