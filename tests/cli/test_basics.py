"""The command as a whole: help pages, exit codes, configuration errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.main import build_parser
from tests.cli.conftest import Call, Run, config_file

COMMANDS = [
    ["demo"],
    ["drivers"],
    ["check-driver"],
    ["find"],
    ["plan"],
    ["plan", "backup"],
    ["plan", "restore"],
    ["backup"],
    ["restore"],
    ["verify"],
    ["list"],
    ["volumes"],
    ["delete"],
    ["gc"],
    ["config"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_page_documents_its_exit_codes(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--help`` of every command ends with an ``exit codes:`` table including 0 and 2."""
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    codes = text.split("exit codes:", 1)[1]
    assert "  0    success" in codes
    assert "  2    usage or configuration error" in codes


def test_the_console_script_and_python_m_print_the_same_help(run: Run, tmp_path: Path) -> None:
    """The installed ``pieceworks`` script and ``python -m pieceworks`` both work, exit 0."""
    script = run("--help")
    module = subprocess.run(
        [sys.executable, "-m", "pieceworks", "--help"], capture_output=True, text=True, check=False
    )
    assert script.code == 0 and module.returncode == 0, script
    assert script.out == module.stdout
    for code in ExitCode:
        assert f"  {int(code):<4} " in script.out


def test_configuration_errors_are_one_line_with_a_documented_code(
    call: Call, tmp_path: Path
) -> None:
    """Bad TOML names file and line; unknown driver, backend, store; ambiguity; missing file.

    In-process `main` (the console script's code; the real script's stderr is
    checked in the other tests).
    """
    broken = config_file(tmp_path, '[backends.lab]\ndriver = "file"\npath = /srv\n', "broken.toml")
    unknown_driver = config_file(
        tmp_path, '[backends.lab]\ndriver = "no-such-driver"\npath = "/tmp"\n', "unknown.toml"
    )
    (tmp_path / "a").mkdir()
    two = config_file(
        tmp_path,
        f'[backends.a]\ndriver = "file"\npath = "{tmp_path / "a"}"\n'
        f'[backends.b]\ndriver = "file"\npath = "{tmp_path / "a"}"\n',
        "two.toml",
    )
    syntax = call("--config", str(broken), "list")
    driver = call("--config", str(unknown_driver), "volumes")
    ambiguous = call("--config", str(two), "volumes")
    backend = call("--config", str(two), "volumes", "--backend", "c")
    store = call("list", "--store", "elsewhere")
    missing = call("--config", str(tmp_path / "missing.toml"), "list")
    for r in (syntax, driver, ambiguous, backend, store, missing):
        assert r.err.count("\n") == 1 and r.err.startswith("pieceworks: error: "), r
        assert r.out == ""
    assert syntax.code == ExitCode.USAGE
    assert f"pieceworks: error: configuration file {broken}, line 3, column 8:" in syntax.err
    assert driver.code == ExitCode.USAGE
    assert "[backends.lab]: unknown driver 'no-such-driver'" in driver.err
    assert "installed: file" in driver.err
    assert ambiguous.code == ExitCode.USAGE
    assert "none is called 'local': choose one with --backend NAME" in ambiguous.err
    assert "(configured backends: a, b)" in ambiguous.err
    assert backend.code == ExitCode.NOT_FOUND
    assert "unknown backend 'c'" in backend.err
    assert store.code == ExitCode.NOT_FOUND
    assert "unknown store 'elsewhere'" in store.err and "configured stores: local" in store.err
    assert missing.code == ExitCode.USAGE and "does not exist" in missing.err


def test_usage_errors_come_from_the_real_script(run: Run) -> None:
    """argparse's usage error (exit 2) for a bad --chunk-size, from the console script."""
    usage = run("backup", "--volume", "v", "--chunk-size", "12 parsecs")
    assert usage.code == ExitCode.USAGE and "invalid size '12 parsecs'" in usage.err


def test_config_comes_from_env_then_default_location(
    call: Call, bare_env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    """No file: built-in defaults under PIECEWORKS_HOME; ~/.config file; PIECEWORKS_CONFIG wins."""
    env = bare_env
    none = call("config", "--json", env=env)
    assert none.code == 0, none
    described = none.json()
    assert described["config_file"] is None
    assert described["backends"]["local"]["path"] == str(home / "volumes")
    assert described["stores"]["local"]["path"] == str(home / "backups")
    assert described["engine"]["persistence"] is None  # flows run in memory by default

    default_loc = Path(env["HOME"]) / ".config" / "pieceworks" / "pieceworks.toml"
    default_loc.parent.mkdir(parents=True)
    default_loc.write_text('[stores.fromdefault]\ndriver = "posix"\npath = "/tmp/x"\n')
    chosen = config_file(tmp_path, '[stores.fromenv]\ndriver = "posix"\npath = "/tmp/y"\n')
    at_default = call("config", "--json", env=env)
    from_env = call("config", "--json", env={**env, "PIECEWORKS_CONFIG": str(chosen)})
    assert list(at_default.json()["stores"]) == ["fromdefault"]
    assert list(from_env.json()["stores"]) == ["fromenv"]
    assert from_env.json()["backends"]["local"]["driver"] == "file"  # not in the file: default


def test_configured_sqlite_persistence_records_the_backup_flow(
    run: Run, home: Path, tmp_path: Path, bare_env: dict[str, str]
) -> None:
    """``[engine] persistence`` still works: the backup's flow is recorded in that SQLite file."""
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "v").write_bytes(b"x" * 100_000)
    db = tmp_path / "state" / "pw.db"
    path = config_file(tmp_path, f'[engine]\npersistence = "sqlite:///{db}"\n')
    done = run("backup", "--volume", "v", "--config", str(path), env=bare_env)
    assert done.code == 0, done
    with sqlite3.connect(db) as conn:
        flows = [row[0] for row in conn.execute("SELECT name FROM flowdetails")]
    assert any(name.startswith("backup-") for name in flows), flows
    shown = run("config", "--config", str(path), env=bare_env)
    assert f"persistence = sqlite:///{db}" in shown.out
