"""A section's ``path`` means the same directory from any working directory.

It was handed to the driver as written: a relative ``path`` was relative to
wherever the command ran (``pieceworks list`` from another directory made a
new, empty store there and said it held no backups), ``~/backups`` made a
directory literally called ``~``, and an empty one made the working
directory the backend's volume directory. Also: ``--config ""`` silently
meant the built-in defaults, and ``driver = 5`` was reported as missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pieceworks.cli.config import load_config
from pieceworks.cli.exit_codes import ExitCode
from pieceworks.common_algorithms.gc.journal import default_journal_dir
from pieceworks.protocols import ConfigError
from tests.cli.conftest import Call, MiB, Run, write_volume


def test_a_relative_path_is_relative_to_the_configuration_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "pw.toml"
    path.write_text(
        '[backends.lab]\ndriver = "file"\npath = "../vol dir"\n'
        '[stores.lab]\ndriver = "posix"\npath = "backups"\n',
        encoding="utf-8",
    )
    config = load_config(str(path), {"HOME": str(tmp_path)})
    assert config.backend("lab").options["path"] == str(tmp_path / "etc" / ".." / "vol dir")
    assert config.store("lab").options["path"] == str(tmp_path / "etc" / "backups")


def test_a_path_starting_with_a_tilde_is_in_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    path = tmp_path / "pw.toml"
    path.write_text('[stores.lab]\ndriver = "posix"\npath = "~/backups"\n', encoding="utf-8")
    config = load_config(str(path), {"HOME": str(tmp_path / "user")})
    assert config.store("lab").options["path"] == str(tmp_path / "user" / "backups")


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_path_is_a_configuration_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "pw.toml"
    path.write_text(f'[backends.lab]\ndriver = "file"\npath = "{value}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[backends\.lab\]: 'path' must not be empty"):
        load_config(str(path), {"HOME": str(tmp_path)})


def test_the_same_configuration_finds_the_same_backups_from_another_directory(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    site = tmp_path / "site"
    write_volume(site / "volumes", "v", MiB)
    config = site / "pw.toml"
    config.write_text(
        '[backends.lab]\ndriver = "file"\npath = "volumes"\n'
        '[stores.lab]\ndriver = "posix"\npath = "backups"\ndurable = false\n'
        '[engine]\npersistence = "memory://"\n',
        encoding="utf-8",
    )
    e = {**env, "PIECEWORKS_CONFIG": str(config)}
    made = run("backup", "--volume", "v", "--json", "-q", env=e)  # runs in tmp_path, not site
    assert made.code == 0, made
    listed = run("list", "--json", env=e)
    assert [b["backup_id"] for b in listed.json()] == [made.json()["backup_id"]]
    assert (site / "backups" / "manifests").is_dir() and not (tmp_path / "backups").exists()


def test_an_empty_config_option_is_an_error_not_the_defaults(call: Call) -> None:
    done = call("--config", "", "list", "--json")
    assert done.code == ExitCode.USAGE, done
    assert "--config must name a configuration file" in done.err


@pytest.mark.parametrize("value", ["5", '""', "true", '"  "'])
def test_a_driver_that_is_no_name_is_named_as_such_not_missing(tmp_path: Path, value: str) -> None:
    path = tmp_path / "pw.toml"
    path.write_text(f'[stores.lab]\ndriver = {value}\npath = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[stores\.lab\]: 'driver' must be the entry point"):
        load_config(str(path), {"HOME": str(tmp_path)})


@pytest.mark.parametrize("how", ["--config", "PIECEWORKS_CONFIG", "default location"])
def test_a_configuration_path_that_is_a_directory_says_so(
    run: Run, env: dict[str, str], tmp_path: Path, how: str
) -> None:
    """A directory given as the configuration file was reported as not existing (and one
    at the default location was silently ignored: the built-in defaults ran instead)."""
    directory = tmp_path / "conf.d"
    directory.mkdir()
    e = {k: v for k, v in env.items() if k != "PIECEWORKS_CONFIG"}
    args = ["list"]
    if how == "--config":
        args = ["--config", str(directory), "list"]
    elif how == "PIECEWORKS_CONFIG":
        e["PIECEWORKS_CONFIG"] = str(directory)
    else:
        directory = Path(e["HOME"]) / ".config" / "pieceworks" / "pieceworks.toml"
        directory.mkdir(parents=True)
    done = run(*args, env=e)
    assert done.code == ExitCode.USAGE, done
    assert f"configuration file {directory} (" in done.err, done
    assert "is a directory, not a file" in done.err, done


def test_a_device_as_configuration_file_is_not_called_missing(call: Call) -> None:
    done = call("--config", "/dev/null", "list")
    assert done.code == ExitCode.USAGE, done
    assert "configuration file /dev/null (--config) is not a regular file" in done.err, done


@pytest.mark.parametrize("command", ["list", "volumes"])
def test_a_pieceworks_home_that_is_a_file_is_a_configuration_error(
    run: Run, env: dict[str, str], tmp_path: Path, command: str
) -> None:
    """``PIECEWORKS_HOME=FILE`` was an unexpected NotADirectoryError (exit 1)."""
    home = tmp_path / "a-file"
    home.write_text("x")
    done = run(command, "--json", env={**env, "PIECEWORKS_HOME": str(home)})
    assert done.code == ExitCode.USAGE, done
    kind = "store" if command == "list" else "backend"
    assert f"built-in default {kind} 'local': cannot make directory {home}/" in done.err, done
    assert '"reference":"config-error"' in done.err, done


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            '[stores.s]\ndriver = "swift"\nauth_url = "http://127.0.0.1:1/auth/v1.0"\n'
            'container = "c"\n',
            "[stores.s]: store driver 'swift' needs options 'user', 'key'"
            " (given: auth_url, container)",
        ),
        (
            '[stores.s]\ndriver = "posix"\npathh = "/tmp/x"\n',
            "[stores.s]: store driver 'posix' needs option 'path' (given: pathh)",
        ),
        (
            '[backends.b]\ndriver = "file"\nroot = "/tmp/x"\n',
            "[backends.b]: driver 'file' needs option 'path' (given: root)",
        ),
    ],
    ids=["missing", "misspelt", "backend"],
)
def test_options_a_driver_lacks_or_does_not_take_are_named(
    call: Call, tmp_path: Path, section: str, message: str
) -> None:
    """Missing or unknown driver options: one line in the configuration's words, exit 2
    (it was Python's 'SwiftStore.__init__() missing 2 required positional arguments')."""
    config = tmp_path / "pieceworks.toml"
    config.write_text(section)
    kind = "--store" if section.startswith("[stores") else "--backend"
    name = "s" if kind == "--store" else "b"
    argv = ["list", "--store", name] if kind == "--store" else ["volumes", "--backend", name]
    done = call("--config", str(config), *argv)
    assert done.code == 2, done
    assert message in done.err and "__init__" not in done.err, done.err


NOUSER = "~no-such-user-pw/"  # a user name no test host has


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ("--config", "--config ~no-such-user-pw/x.toml"),
        ("PIECEWORKS_CONFIG", "PIECEWORKS_CONFIG ~no-such-user-pw/x.toml"),
        ("PIECEWORKS_HOME", "PIECEWORKS_HOME ~no-such-user-pw/x"),
        ("XDG_CONFIG_HOME", "XDG_CONFIG_HOME ~no-such-user-pw/x"),
        ("path", "[stores.local]: 'path' ~no-such-user-pw/x"),
        ("password_file", "[stores.local]: 'password_file' ~no-such-user-pw/x"),
    ],
)
def test_a_tilde_naming_an_unknown_user_is_a_configuration_error(
    run: Run, env: dict[str, str], tmp_path: Path, where: str, named: str
) -> None:
    """``~nouser/...`` was an "unexpected RuntimeError: Could not determine home directory"
    (exit 1) naming neither the path nor where it was given."""
    args: list[str] = []
    e = {k: v for k, v in env.items() if k != "PIECEWORKS_CONFIG"}
    if where == "--config":
        args = ["--config", NOUSER + "x.toml"]
    elif where == "PIECEWORKS_CONFIG":
        e[where] = NOUSER + "x.toml"
    elif where in ("PIECEWORKS_HOME", "XDG_CONFIG_HOME"):
        e[where] = NOUSER + "x"
    else:
        body = f'path = "{NOUSER}x"' if where == "path" else f'path = "s"\n{where} = "{NOUSER}x"'
        config = tmp_path / "tilde.toml"
        config.write_text(f'[stores.local]\ndriver = "posix"\n{body}\n', encoding="utf-8")
        args = ["--config", str(config)]
    done = run(*args, "list", env=e, timeout=30)
    assert done.code == ExitCode.USAGE, done
    assert f"{named}: cannot expand '~no-such-user-pw': there is no user" in done.err, done
    assert "unexpected" not in done.err and "RuntimeError" not in done.err, done


def test_the_journal_directory_of_an_unknown_users_home_is_a_configuration_error() -> None:
    """`default_journal_dir` (used by workers and `recover` outside the command line's
    checks) raised the same RuntimeError for ``PIECEWORKS_HOME=~nouser/h``."""
    with pytest.raises(ConfigError, match=r"PIECEWORKS_HOME ~no-such-user-pw/h: cannot expand"):
        default_journal_dir({"PIECEWORKS_HOME": NOUSER + "h"})
    assert default_journal_dir({"PIECEWORKS_HOME": "/srv/pw"}) == Path("/srv/pw/journal")


def test_a_configuration_file_starting_with_a_byte_order_mark_is_read(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """A file saved "UTF-8 with BOM" (Windows editors do) was refused with "line 1,
    column 1: Invalid statement", which does not mention the invisible mark. One leading
    mark is skipped, as editors and most TOML tools do; the file is then read as written."""
    stores = tmp_path / "bom-stores"
    config = tmp_path / "bom.toml"
    text = f'[stores.bom]\ndriver = "posix"\npath = "{stores}"\n'
    config.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    done = run("--config", str(config), "config", "--json", timeout=30)
    assert done.code == 0, done
    assert list(done.json()["stores"]) == ["bom"], done
    assert load_config(str(config), {"HOME": str(tmp_path)}).store("bom").options["path"] == str(
        stores
    )


def test_a_configuration_file_larger_than_1_mib_is_refused_unread(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """``--config disk.img`` (a regular file, so not refused as a device) was read whole
    into memory before TOML parsing failed; more than 1 MiB is refused, naming the file."""
    big = tmp_path / "disk.img"
    with open(big, "wb") as f:
        f.truncate(64 * MiB)  # sparse: costs no disk
    done = run("--config", str(big), "list", timeout=30)
    assert done.code == ExitCode.USAGE, done
    assert f"configuration file {big} is larger than 1 MiB" in done.err, done
    exact = tmp_path / "padded.toml"
    exact.write_bytes(b"# " + b"x" * (MiB - 3) + b"\n")
    assert run("--config", str(exact), "list", timeout=30).code == 0
