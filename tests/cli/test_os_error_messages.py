"""Every path the command line takes, when it cannot be used: why, in words, never ``[Errno N]``.

Messages showed Python's ``str(OSError)``: ``cannot read the passphrase
file adir: [Errno 21] Is a directory: 'adir'``, a posix store path under a
file ``[Errno 20] Not a directory``, a store path that is a file ``[Errno
17] File exists``, ``--events`` into a directory ``unexpected
IsADirectoryError: [Errno 21] ...``. Each now names the path, the action
and the reason in words (the file in the way, the missing directory), with
exit 2 for a bad input and nothing changed. (Root runs the tests, so
"permission denied" is out of reach; ``chattr +i`` covers a refused write in
``test_failpoints_actions``.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, MiB, Run, config_file, write_volume

PASSWORD = "a long passphrase"


@pytest.fixture
def bad_paths(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (path, the reason a message must give) for paths that cannot be read."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    return {
        "missing directory": (
            str(tmp_path / "nowhere" / "f"),
            f"directory {tmp_path / 'nowhere'} does not exist",
        ),
        "a directory": (str(tmp_path / "adir"), "Is a directory"),
        "through a file": (
            str(tmp_path / "afile" / "f"),
            f"{tmp_path / 'afile'} is not a directory",
        ),
        "a link loop": (str(tmp_path / "loop"), "Too many levels of symbolic links"),
        "not UTF-8": (str(tmp_path / "binary"), "it is not UTF-8 text"),
    }


def _assert_in_words(result: object, err: str, path: str, reason: str) -> None:
    assert "Errno" not in err and "Traceback" not in err, result
    assert path in err and reason in err, result


@pytest.mark.parametrize(
    "case", ["missing directory", "a directory", "through a file", "a link loop", "not UTF-8"]
)
def test_passphrase_files_say_why_they_cannot_be_read(
    call: Call, env: dict[str, str], bad_paths: dict[str, tuple[str, str]], case: str
) -> None:
    """--password-file, $PIECEWORKS_PASSWORD_FILE, --new-password-file, --from-password-file."""
    path, reason = bad_paths[case]
    wanted = f"cannot read the passphrase file {path}: {reason}"
    init = call("key", "init", "--password-file", path, env=env)
    assert init.code == ExitCode.USAGE, init
    _assert_in_words(init, init.err, path, wanted)
    from_env = call("key", "init", env={**env, "PIECEWORKS_PASSWORD_FILE": path})
    assert from_env.code == ExitCode.USAGE, from_env
    _assert_in_words(from_env, from_env.err, path, wanted)

    keyed = {**env, "PIECEWORKS_PASSWORD": PASSWORD}
    assert call("key", "init", env=keyed).code == 0
    added = call("key", "add", "--new-password-file", path, env=keyed)
    assert added.code == ExitCode.USAGE, added
    _assert_in_words(
        added, added.err, path, f"cannot read the new passphrase file {path}: {reason}"
    )


def test_copy_from_password_file_says_why(
    call: Call, env: dict[str, str], tmp_path: Path, bad_paths: dict[str, tuple[str, str]]
) -> None:
    conf = config_file(
        tmp_path,
        f'[stores.one]\ndriver = "posix"\npath = "{tmp_path / "one"}"\n'
        f'[stores.two]\ndriver = "posix"\npath = "{tmp_path / "two"}"\n',
    )
    e = {**env, "PIECEWORKS_CONFIG": str(conf)}
    assert (
        call("key", "init", "--store", "one", env={**e, "PIECEWORKS_PASSWORD": PASSWORD}).code == 0
    )
    path, reason = bad_paths["a directory"]
    done = call(
        "copy", "--from-store", "one", "--to-store", "two", "--from-password-file", path, env=e
    )
    assert done.code == ExitCode.USAGE, done
    _assert_in_words(done, done.err, path, f"cannot read the passphrase file {path}: {reason}")


def test_a_configuration_file_that_is_not_utf8_says_so(
    call: Call, env: dict[str, str], bad_paths: dict[str, tuple[str, str]]
) -> None:
    path, _reason = bad_paths["not UTF-8"]
    done = call("list", "--config", path, env=env)
    assert done.code == ExitCode.USAGE, done
    _assert_in_words(
        done, done.err, path, f"cannot read configuration file {path}: it is not UTF-8 text"
    )
    assert "codec" not in done.err, done


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("afile", "it is a file, not a directory"),
        ("afile/store", "{tmp}/afile is not a directory"),
    ],
)
def test_a_posix_store_path_that_cannot_be_a_directory_says_why(
    call: Call, env: dict[str, str], tmp_path: Path, where: str, reason: str
) -> None:
    (tmp_path / "afile").write_text("x")
    path = tmp_path / where
    conf = config_file(tmp_path, f'[stores.s]\ndriver = "posix"\npath = "{path}"\n')
    done = call("list", "--store", "s", env={**env, "PIECEWORKS_CONFIG": str(conf)})
    assert done.code == ExitCode.USAGE, done
    wanted = f"posix store: cannot use '{path}': {reason.format(tmp=tmp_path)}"
    _assert_in_words(done, done.err, str(path), wanted)
    assert (tmp_path / "afile").read_text() == "x"


def test_a_store_write_refused_names_the_file_in_the_way(
    run: Run, env: dict[str, str], home: Path
) -> None:
    """The store's ``manifests`` is a file: the backup says so, not ``[Errno 20]`` on a .tmp-."""
    write_volume(home / "volumes", "vol-1", MiB)
    store = home / "backups"
    store.mkdir(parents=True)
    (store / "manifests").write_text("in the way")
    done = run("backup", "--volume", "vol-1")
    assert done.code == ExitCode.FAILED, done
    assert "Errno" not in done.err and ".tmp-" not in done.err, done
    assert f"cannot write '{store}/manifests/bk-" in done.err, done
    assert f"{store}/manifests is not a directory" in done.err, done


@pytest.mark.timeout(120)
def test_conductor_events_file_that_cannot_be_opened_is_a_usage_error(
    call: Call, env: dict[str, str], tmp_path: Path, bad_paths: dict[str, tuple[str, str]]
) -> None:
    """It was ``unexpected IsADirectoryError: [Errno 21] ...`` (exit 1)."""
    path, reason = bad_paths["a directory"]
    done = call(
        "conductor",
        "--jobboard", "redis://127.0.0.1:6379/15",
        "--persistence", f"sqlite:///{tmp_path / 'p.db'}",
        "--events", path,
        "--json",
        env=env,
    )  # fmt: skip
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["message"] == f"--events {path}: cannot open it to append events: {reason}"
    assert error["reference"] == "usage-error", error


def test_a_sqlite_persistence_under_a_file_is_a_configuration_error(
    call: Call, env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    """It was ``unexpected NotADirectoryError: [Errno 20] ...`` (exit 1) before any work."""
    write_volume(home / "volumes", "vol-1", MiB)
    (tmp_path / "afile").write_text("x")
    url = f"sqlite:///{tmp_path / 'afile' / 'db' / 'p.db'}"
    conf = config_file(tmp_path, f'[engine]\npersistence = "{url}"\n')
    done = call("backup", "--volume", "vol-1", env={**env, "PIECEWORKS_CONFIG": str(conf)})
    assert done.code == ExitCode.USAGE, done
    wanted = (
        f"[engine] persistence {url!r} cannot be used: cannot make directory"
        f" {tmp_path / 'afile' / 'db'}: {tmp_path / 'afile'} is not a directory"
    )
    _assert_in_words(done, done.err, str(tmp_path / "afile"), wanted)
    assert not (home / "backups" / "manifests").exists(), done


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("a link loop", "cannot be used: Too many levels of symbolic links"),
        ("through a file", "cannot be used: {tmp}/afile is not a directory"),
        ("missing directory", "does not exist"),
        ("a directory", "is a directory, not a file"),
    ],
)
def test_a_configuration_file_that_cannot_be_used_says_why(
    call: Call,
    env: dict[str, str],
    tmp_path: Path,
    bad_paths: dict[str, tuple[str, str]],
    case: str,
    problem: str,
) -> None:
    """A link loop and a path through a file said "does not exist"; both name the cause now."""
    path, _reason = bad_paths[case]
    wanted = f"configuration file {path} (--config) {problem.format(tmp=tmp_path)}"
    done = call("list", "--config", path, env=env)
    assert done.code == ExitCode.USAGE, done
    _assert_in_words(done, done.err, path, wanted)
