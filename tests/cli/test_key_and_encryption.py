"""``pieceworks key`` and encrypted stores end to end: passphrases, exit codes, no leaks."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import MiB, Run, RunAll, config_file, write_volume

PASSWORD = "Tr0ub4dor-&-3-zebra"
NEW_PASSWORD = "correct-horse-battery-staple-77"


def _store_files(home: Path) -> dict[str, bytes]:
    root = home / "backups"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _with(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, **extra}


def test_an_encrypted_store_from_init_to_restore(run: Run, env: dict[str, str], home: Path) -> None:
    """key init, backup, list, verify, restore: all with the passphrase; nothing readable."""
    write_volume(home / "volumes", "vol-1", 2 * MiB)
    marker = (home / "volumes" / "vol-1").read_bytes()[:4096]
    e = _with(env, PIECEWORKS_PASSWORD=PASSWORD)
    init = run("key", "init", "--json", env=e)
    assert init.code == 0, init
    key_id = init.json()["key_id"]
    backup = run("backup", "--volume", "vol-1", "--json", env=e)
    assert backup.code == 0, backup
    backup_id = backup.json()["backup_id"]
    listed = run("list", "--json", env=e)
    assert listed.code == 0 and backup_id in listed.out, listed
    assert run("verify", backup_id, env=e).code == 0
    restored = run("restore", backup_id, "--volume", "copy-1", env=e)
    assert restored.code == 0, restored
    assert (home / "volumes" / "copy-1").read_bytes() == (home / "volumes" / "vol-1").read_bytes()
    for name, body in _store_files(home).items():
        assert marker[:64] not in body, name
        assert b"vol-1" not in body or name.startswith(("leases/", "keys/")), name
    keys = run("key", "list", "--json")  # no passphrase needed to list
    assert keys.code == 0 and [k["key_id"] for k in keys.json()["keys"]] == [key_id]


def test_wrong_or_missing_passphrase_is_exit_2_and_touches_nothing(
    run: Run, env: dict[str, str], home: Path
) -> None:
    """A clear error naming the store, exit 2, the store byte for byte as it was."""
    write_volume(home / "volumes", "vol-1", MiB)
    e = _with(env, PIECEWORKS_PASSWORD=PASSWORD)
    assert run("key", "init", env=e).code == 0
    assert run("backup", "--volume", "vol-1", env=e).code == 0
    before = _store_files(home)
    for args in (("list",), ("backup", "--volume", "vol-1"), ("gc",)):
        wrong = run(*args, env=_with(env, PIECEWORKS_PASSWORD="Not-The-Passphrase-9"))
        assert wrong.code == 2 and "wrong passphrase" in wrong.err, wrong
        missing = run(*args)
        assert missing.code == 2 and "store 'local' is encrypted" in missing.err, missing
    assert _store_files(home) == before


def test_a_missing_passphrase_is_a_usage_error_not_a_configuration_error(
    run: Run, run_all: RunAll, home: Path, tmp_path: Path
) -> None:
    """No passphrase given (key init, an encrypted store, key add's new one): ``usage-error``.

    It was ``config-error`` with the hint "`pieceworks config` shows the
    configuration in use": nothing is wrong with the configuration, an
    input is missing from the command line or the environment.
    """
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD)
    home.mkdir(parents=True)
    init = run("key", "init", "--json")
    encrypted = config_file(
        tmp_path, f'[stores.enc]\ndriver = "posix"\npath = "{tmp_path / "enc"}"\n'
    )
    assert run("--config", str(encrypted), "key", "init", "--password-file", str(pw_file)).code == 0
    listing, add = run_all(
        commands=[
            ["--config", str(encrypted), "list", "--json"],
            ["--config", str(encrypted), "key", "add", "--password-file", str(pw_file), "--json"],
        ]
    )
    for done, says in (
        (init, "store 'local' is to be encrypted"),
        (listing, "store 'enc' is encrypted"),
        (add, "a new passphrase for store 'enc' is needed"),
    ):
        assert done.code == ExitCode.USAGE, done
        error = json.loads(done.err.strip().splitlines()[-1])
        assert error["reference"] == "usage-error" and says in error["message"], error
        assert "hint" not in error, error
    assert not (home / "backups" / "keys").exists()


def test_key_add_passwd_remove_from_the_command_line(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """Passphrases from files and the environment; the old one refused after passwd."""
    write_volume(home / "volumes", "vol-1", MiB)
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD + "\n")
    new_file = tmp_path / "new"
    new_file.write_text(NEW_PASSWORD)
    assert run("key", "init", "--password-file", str(pw_file)).code == 0
    added = run(
        "key", "add", "--password-file", str(pw_file), "--new-password-file", str(new_file),
        "--json",
    )  # fmt: skip
    assert added.code == 0, added
    assert run("list", env=_with(env, PIECEWORKS_PASSWORD=NEW_PASSWORD)).code == 0
    changed = run(
        "key", "passwd", env=_with(env, PIECEWORKS_PASSWORD=PASSWORD,
                                    PIECEWORKS_NEW_PASSWORD="third-Passphrase-42"),
    )  # fmt: skip
    assert changed.code == 0, changed
    assert run("list", env=_with(env, PIECEWORKS_PASSWORD=PASSWORD)).code == 2
    keys = run("key", "list", "--json").json()["keys"]
    assert len(keys) == 2
    new_id = added.json()["key_id"]  # the key NEW_PASSWORD opens, untouched by passwd
    e3 = _with(env, PIECEWORKS_PASSWORD="third-Passphrase-42")
    assert run("key", "remove", new_id, env=e3).code == 0
    last = run("key", "list", "--json").json()["keys"][0]["key_id"]
    refused = run("key", "remove", last, env=e3)
    assert refused.code == 2 and "last key" in refused.err, refused
    unknown = run("key", "remove", "0000000000000000", env=e3)
    assert unknown.code == 3, unknown


def test_key_init_refuses_a_store_with_backups(run: Run, env: dict[str, str], home: Path) -> None:
    """A plain store with backups stays plain: exit 2 and a pointer to `copy`."""
    write_volume(home / "volumes", "vol-1", MiB)
    assert run("backup", "--volume", "vol-1").code == 0
    refused = run("key", "init", env=_with(env, PIECEWORKS_PASSWORD=PASSWORD))
    assert refused.code == 2 and "copy" in refused.err, refused
    assert run("list").code == 0


def test_the_passphrase_never_appears_in_output_logs_or_persistence(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """-vv logs, --json, errors and the SQLite persistence database hold no passphrase."""
    write_volume(home / "volumes", "vol-1", MiB)
    db = tmp_path / "pw.db"
    conf = config_file(tmp_path, f'[engine]\npersistence = "sqlite:///{db}"\n', "sqlite.toml")
    e = _with(env, PIECEWORKS_PASSWORD=PASSWORD, PIECEWORKS_CONFIG=str(conf))
    results = [
        run("key", "init", "-vv", env=e),
        run("backup", "--volume", "vol-1", "-vv", "--json", env=e),
        run("list", "-vv", "--json", env=e),
        run("config", "--json", env=e),
    ]
    for result in results:
        assert result.code == 0, result
        assert PASSWORD not in result.out and PASSWORD not in result.err, result
    backup_id = results[1].json()["backup_id"]
    assert run("verify", backup_id, "-vv", env=e).code == 0
    assert PASSWORD.encode() not in db.read_bytes()
    for body in _store_files(home).values():
        assert PASSWORD.encode() not in body
    bad_file = run("list", "--password-file", str(tmp_path / "missing"))
    assert bad_file.code == 2 and "missing" in bad_file.err
    assert json.loads(results[2].out)


def test_copy_between_an_encrypted_and_a_plain_store(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """`pieceworks copy`: the source's passphrase from --from-password-file, the target's own."""
    conf = config_file(
        tmp_path,
        f'[engine]\npersistence = "memory://"\n'
        f'[stores.vault]\ndriver = "posix"\npath = "{tmp_path / "vault"}"\n'
        f'[stores.offsite]\ndriver = "posix"\npath = "{tmp_path / "offsite"}"\n',
        "two.toml",
    )
    e = _with(env, PIECEWORKS_CONFIG=str(conf))
    write_volume(home / "volumes", "vol-1", 2 * MiB)
    from_file = tmp_path / "from-pw"
    from_file.write_text(PASSWORD)
    sealed = _with(e, PIECEWORKS_PASSWORD=PASSWORD)
    assert run("key", "init", "--store", "vault", env=sealed).code == 0
    made = run("backup", "--volume", "vol-1", "--store", "vault", "--json", env=sealed)
    assert made.code == 0, made
    backup_id = made.json()["backup_id"]
    args = ("copy", "--from-store", "vault", "--to-store", "offsite", "--json")
    missing = run(*args, env=e)
    assert missing.code == 2 and "PIECEWORKS_FROM_PASSWORD" in missing.err, missing
    copied = run(*args, "--from-password-file", str(from_file), env=e)
    assert copied.code == 0, copied
    assert copied.json()["backups_copied"] == [backup_id]
    again = run(*args, env=_with(e, PIECEWORKS_FROM_PASSWORD=PASSWORD))
    assert again.code == 0 and again.json()["backups_skipped"] == [backup_id], again
    assert run("verify", backup_id, "--store", "offsite", env=e).code == 0
    restored = run("restore", backup_id, "--store", "offsite", "--volume", "copy-1", env=e)
    assert restored.code == 0, restored
    assert (home / "volumes" / "copy-1").read_bytes() == (home / "volumes" / "vol-1").read_bytes()
    same = run("copy", "--from-store", "offsite", "--to-store", "offsite", env=e)
    assert same.code == 2, same
    unknown = run("copy", "--from-store", "offsite", "--to-store", "vault", "bk-nope", env=sealed)
    assert unknown.code == 3, unknown


@pytest.mark.parametrize("point", ["copy.chunk-copied=kill@2", "copy.before-manifest=kill"])
def test_a_copy_killed_at_a_failpoint_leaves_no_backup_and_completes_when_run_again(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path, point: str
) -> None:
    """SIGKILL mid-copy: no manifest in the target; the next copy finishes and verifies."""
    conf = config_file(
        tmp_path,
        f'[engine]\npersistence = "memory://"\n'
        f'[stores.vault]\ndriver = "posix"\npath = "{tmp_path / "vault"}"\n'
        f'[stores.offsite]\ndriver = "posix"\npath = "{tmp_path / "offsite"}"\n',
        "two.toml",
    )
    e = _with(env, PIECEWORKS_CONFIG=str(conf), PIECEWORKS_PASSWORD=PASSWORD)
    write_volume(home / "volumes", "vol-1", 3 * MiB)
    assert run("key", "init", "--store", "offsite", env=e).code == 0
    made = run("backup", "--volume", "vol-1", "--store", "vault", "--chunk-size", "256KiB",
               "--json", env=e)  # fmt: skip
    assert made.code == 0, made
    backup_id = made.json()["backup_id"]
    args = ("copy", "--from-store", "vault", "--to-store", "offsite")
    killed = run(*args, env=_with(e, PIECEWORKS_FAILPOINTS=point))
    assert killed.code == -signal.SIGKILL, killed
    assert not list((tmp_path / "offsite" / "manifests").glob("*.json"))
    assert run("list", "--store", "offsite", "--json", env=e).json() == []
    again = run(*args, "--json", env=e)
    assert again.code == 0 and again.json()["backups_copied"] == [backup_id], again
    assert again.json()["chunks_skipped"] >= 1
    assert run("verify", backup_id, "--store", "offsite", env=e).code == 0


def test_a_store_section_password_file_opens_the_store(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """``password_file`` in the store's section (relative to the file): no passphrase in the
    environment needed; it is not passed to the store driver; misplaced or wrong: exit 2."""
    write_volume(home / "volumes", "vol-1", MiB)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "local.pass").write_text(PASSWORD + "\n")
    text = (
        f'[backends.local]\ndriver = "file"\npath = "{home / "volumes"}"\n'
        f'[stores.local]\ndriver = "posix"\npath = "{home / "backups"}"\n'
    )
    config = config_file(tmp_path / "conf", text + 'password_file = "local.pass"\n')
    assert run("key", "init", env=_with(env, PIECEWORKS_PASSWORD=PASSWORD)).code == 0
    e = _with(env, PIECEWORKS_CONFIG=str(config))
    backup = run("backup", "--volume", "vol-1", "--json", env=e)
    assert backup.code == 0, backup
    assert run("list", "--json", env=e).json()[0]["backup_id"] == backup.json()["backup_id"]
    shown = run("config", "--json", env=e)
    assert shown.code == 0 and PASSWORD not in shown.out

    misplaced = config_file(tmp_path, text.replace('"file"\n', '"file"\npassword_file = "x"\n'))
    done = run("list", env=_with(env, PIECEWORKS_CONFIG=str(misplaced)))
    assert done.code == 2 and "'password_file' belongs in a store's section" in done.err, done
    missing = config_file(tmp_path, text + 'password_file = "nowhere.pass"\n', "missing.toml")
    done = run("list", env=_with(env, PIECEWORKS_CONFIG=str(missing)))
    assert done.code == 2 and "cannot read the passphrase file" in done.err, done
    assert str(tmp_path / "nowhere.pass") in done.err


@pytest.mark.parametrize("name", ["/dev/zero", "big"])
def test_a_password_file_larger_than_64_kib_is_refused_at_once(
    run: Run, tmp_path: Path, name: str
) -> None:
    """``--password-file /dev/zero`` read on until the kernel killed the process: a
    passphrase file is read up to 64 KiB and a larger one refused, naming it."""
    good = tmp_path / "good.pass"
    good.write_text(PASSWORD + "\n", encoding="utf-8")
    assert run("key", "init", "--password-file", str(good)).code == 0
    path = Path(name) if name.startswith("/") else tmp_path / name
    if not name.startswith("/"):
        path.write_bytes(b"x" * (64 * 1024 + 1))
    done = run("list", "--password-file", str(path), timeout=20)
    assert done.code == 2, done
    assert f"the passphrase file {path} is larger than 64 KiB" in done.err, done
    assert "Traceback" not in done.err and "unexpected" not in done.err, done


def test_a_password_file_of_64_kib_is_read(run: Run, tmp_path: Path) -> None:
    """The limit refuses only what is larger: a 64 KiB passphrase still opens the store."""
    path = tmp_path / "long.pass"
    path.write_text("p" * (64 * 1024 - 1) + "\n", encoding="utf-8")
    assert run("key", "init", "--password-file", str(path)).code == 0
    done = run("list", "--password-file", str(path), "--json", timeout=20)
    assert done.code == 0, done


def test_key_errors_give_a_key_hint_not_the_configuration_one(
    run: Run, env: dict[str, str], home: Path
) -> None:
    """`not-encrypted` and `key-refused` said "`pieceworks config` shows the configuration
    in use", inherited from ConfigError: the configuration was not what was wrong."""
    plain = run("key", "list", "--json")
    assert plain.code == 2 and json.loads(plain.err)["reference"] == "not-encrypted", plain
    assert json.loads(plain.err)["hint"].startswith("`pieceworks key init` encrypts"), plain
    e = _with(env, PIECEWORKS_PASSWORD=PASSWORD)
    assert run("key", "init", env=e).code == 0
    again = run("key", "init", "--json", env=e)
    assert again.code == 2 and json.loads(again.err)["reference"] == "key-refused", again
    assert json.loads(again.err)["hint"].startswith(
        "`pieceworks key list` shows the store's keys"
    ), again
    for failed in (plain, again):
        assert "pieceworks config" not in json.loads(failed.err)["hint"]
