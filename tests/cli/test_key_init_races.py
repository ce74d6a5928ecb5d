"""``key init`` racing a backup into an empty store: never plain and sealed data mixed.

``key init`` checked that the store was empty, then wrote its key. A backup
that had opened the store as plain (no key yet) wrote plain chunks and a
plain manifest into a store that then held a key: both exited 0, and the
backup could not be listed or restored with the passphrase ("corrupt").
Now one of them steps back (`pieceworks.common_algorithms.encryption_lock`):
``key init`` when it finds a backup's lease, the backup when it finds the
key or a running init's marker after taking its lease, before any data.
Failpoints hold each side at its race window; every command is a real
``pieceworks`` process.

Key changes (``add``, ``passwd``, ``remove``) never change the master key, so
a backup or restore that opened the store keeps working through them: the
last tests prove it with the same kind of held-open window.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import MiB, Result, Run, _start, write_volume

PASSWORD = "a long passphrase"


def _finish(proc: subprocess.Popen[str], args: list[str], timeout: float = 120) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return Result(tuple(args), proc.returncode, out, err)


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until `path` exists (the process got that far); fail if the process ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the process ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.05)


def _wait_for_file(directory: Path, proc: subprocess.Popen[str], prefix: str = "") -> Path:
    """The first file in `directory` whose name starts with `prefix`, once there is one."""
    deadline = time.monotonic() + 60
    while True:
        found = sorted(directory.glob(f"{prefix}*")) if directory.is_dir() else []
        if found:
            return found[0]
        assert proc.poll() is None, f"the process ended before a file appeared in {directory}"
        assert time.monotonic() < deadline, f"no file appeared in {directory} in 60 s"
        time.sleep(0.05)


def _objects(home: Path) -> list[str]:
    root = home / "backups"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_consistent(run: Run, env: dict[str, str], home: Path, password: str = PASSWORD) -> None:
    """Encrypted: only sealed backups (check passes with the passphrase); plain: check passes."""
    keyed = any(name.startswith("keys/") for name in _objects(home))
    e = {**env, "PIECEWORKS_PASSWORD": password} if keyed else env
    checked = run("check", "--read-data-subset", "100%", "--json", env=e)
    assert checked.code == 0, (checked, _objects(home))
    assert checked.json()["manifests_unreadable"] == 0, checked
    listed = run("list", "--json", env=e)
    assert listed.code == 0, listed


def test_a_backup_while_key_init_is_between_its_check_and_its_key_never_mixes(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """key init held after finding the store empty; a whole backup runs meanwhile.

    Before: both exited 0, and the store held a key beside a plain manifest
    and plain chunks (``check`` with the passphrase: unreadable manifest).
    Now the backup finds the init's marker after taking its lease and stops
    before writing data; the init then encrypts the empty store.
    """
    write_volume(home / "volumes", "vol-1", MiB)
    init_args = ["key", "init", "--json"]
    held = {
        **env,
        "PIECEWORKS_PASSWORD": PASSWORD,
        "PIECEWORKS_FAILPOINTS": "key.before-write=sleep:10000",
    }
    init = _start(init_args, held, tmp_path)
    _wait_for(home / "backups", init)  # the init opened the store; its check follows at once
    time.sleep(0.5)
    backup = run("backup", "--volume", "vol-1", "--json", timeout=120)
    initialised = _finish(init, init_args)
    assert not (backup.code == 0 and initialised.code == 0), (backup, initialised, _objects(home))
    assert initialised.code == 0, initialised  # the backup found the init's marker and stepped back
    assert backup.code == ExitCode.FAILED, backup
    assert "a `pieceworks key init` is encrypting store 'local' right now" in backup.err, backup
    assert "stopped before writing any data" in backup.err, backup
    assert [n for n in _objects(home) if not n.startswith("keys/")] == [], _objects(home)
    _assert_consistent(run, env, home)
    again = run("backup", "--volume", "vol-1", env={**env, "PIECEWORKS_PASSWORD": PASSWORD})
    assert again.code == 0, again
    _assert_consistent(run, env, home)


def test_key_init_while_a_backup_has_opened_the_store_stops_the_backup_before_its_data(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A backup opened the plain store and is held before its lease; key init runs whole.

    Before: the backup then wrote plain chunks and a plain manifest into the
    store key init had just encrypted, and exited 0. Now it takes its lease,
    finds the key and stops: exit 1, nothing of it in the store.
    """
    write_volume(home / "volumes", "vol-1", MiB)
    backup_args = ["backup", "--volume", "vol-1", "--json"]
    held = {**env, "PIECEWORKS_FAILPOINTS": "backup.before-lease=sleep:10000"}
    backup = _start(backup_args, held, tmp_path)
    _wait_for(home / "backups", backup)  # the backup opened the store, as plain
    initialised = run("key", "init", env={**env, "PIECEWORKS_PASSWORD": PASSWORD})
    assert initialised.code == 0, initialised
    stopped = _finish(backup, backup_args)
    assert stopped.code == ExitCode.FAILED, (stopped, _objects(home))
    assert "store 'local' was encrypted (`pieceworks key init`) after this backup" in stopped.err
    assert "stopped before writing any data" in stopped.err, stopped
    assert [n for n in _objects(home) if not n.startswith("keys/")] == [], _objects(home)
    _assert_consistent(run, env, home)


def test_key_init_names_the_backup_being_written(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A backup holding its lease: key init says which backup, who runs it, and writes no key."""
    write_volume(home / "volumes", "vol-1", MiB)
    backup_args = ["backup", "--volume", "vol-1", "--json"]
    held = {**env, "PIECEWORKS_FAILPOINTS": "backup.lease-taken=sleep:10000"}
    backup = _start(backup_args, held, tmp_path)
    lease = _wait_for_file(home / "backups" / "leases", backup, "bk-")
    refused = run("key", "init", env={**env, "PIECEWORKS_PASSWORD": PASSWORD})
    done = _finish(backup, backup_args)
    assert refused.code == ExitCode.USAGE, refused
    assert f"a backup is being written into this store (backup {lease.name} (host " in (
        refused.err
    ), refused
    assert "alive)" in refused.err and "no key was written" in refused.err, refused
    assert done.code == 0, done
    assert not any(n.startswith(("keys/", "locks/")) for n in _objects(home)), _objects(home)
    _assert_consistent(run, env, home)


def test_a_key_appearing_before_the_manifest_stops_the_backup_without_a_manifest(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """The last look, before the manifest: a key file that appeared (a store that lists late
    could let an init miss the lease) and the backup writes no plain manifest beside it."""
    keyed = tmp_path / "keyed"
    made = run(
        "key", "init", env={**env, "PIECEWORKS_HOME": str(keyed), "PIECEWORKS_PASSWORD": PASSWORD}
    )
    assert made.code == 0, made
    (key_file,) = (keyed / "backups" / "keys").iterdir()
    write_volume(home / "volumes", "vol-1", MiB)
    backup_args = ["backup", "--volume", "vol-1", "--json"]
    held = {**env, "PIECEWORKS_FAILPOINTS": "backup.before-manifest=sleep:6000"}
    backup = _start(backup_args, held, tmp_path)
    _wait_for_file(home / "backups" / "leases", backup, "bk-")
    _wait_for(home / "backups" / "chunks", backup)
    time.sleep(1.0)  # 1 MiB of chunks is written by now; the backup sleeps before its manifest
    (home / "backups" / "keys").mkdir(exist_ok=True)
    (home / "backups" / "keys" / key_file.name).write_bytes(key_file.read_bytes())
    stopped = _finish(backup, backup_args)
    assert stopped.code == ExitCode.FAILED, (stopped, _objects(home))
    assert "its manifest was not written, so no backup came to exist" in stopped.err, stopped
    assert not any(n.startswith("manifests/") for n in _objects(home)), _objects(home)
    e = {**env, "PIECEWORKS_PASSWORD": PASSWORD}
    pruned = run("prune", env=e)
    assert pruned.code == 0, pruned
    assert [n for n in _objects(home) if not n.startswith("keys/")] == [], _objects(home)


def test_a_killed_key_init_blocks_nothing(run: Run, env: dict[str, str], home: Path) -> None:
    """A key init killed with its marker written: a backup ignores the dead marker, and so
    does the next key init, which removes it (nothing left under locks/)."""
    e = {**env, "PIECEWORKS_PASSWORD": PASSWORD}
    killed = run("key", "init", env={**e, "PIECEWORKS_FAILPOINTS": "key.before-write=kill"})
    assert killed.code == -9, killed
    assert [n for n in _objects(home) if n.startswith("locks/key-init.")], _objects(home)
    initialised = run("key", "init", env=e)
    assert initialised.code == 0, initialised
    assert not any(n.startswith("locks/") for n in _objects(home)), _objects(home)


def test_a_backup_ignores_the_marker_of_a_killed_key_init(
    run: Run, env: dict[str, str], home: Path
) -> None:
    """The dead init's marker does not stop a plain backup (its owner is known dead); the
    backup removes it."""
    e = {**env, "PIECEWORKS_PASSWORD": PASSWORD, "PIECEWORKS_FAILPOINTS": "key.before-write=kill"}
    killed = run("key", "init", env=e)
    assert killed.code == -9, killed
    write_volume(home / "volumes", "vol-1", MiB)
    backup = run("backup", "--volume", "vol-1")
    assert backup.code == 0, backup
    assert not any(n.startswith("locks/") for n in _objects(home)), _objects(home)  # removed
    _assert_consistent(run, env, home)


def test_passwd_and_remove_during_a_backup_and_a_restore_lose_nothing(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """The master key never changes: a backup that opened the store with a passphrase that
    ``key passwd`` then replaces completes, and a restore that opened it with a key that
    ``key remove`` then removes completes; both readable with the passphrases left."""
    old, new, other = PASSWORD, "a new long passphrase", "another passphrase"
    assert run("key", "init", env={**env, "PIECEWORKS_PASSWORD": old}).code == 0
    added = run(
        "key",
        "add",
        "--json",
        env={**env, "PIECEWORKS_PASSWORD": old, "PIECEWORKS_NEW_PASSWORD": other},
    )
    assert added.code == 0, added
    write_volume(home / "volumes", "vol-1", MiB)
    backup_args = ["backup", "--volume", "vol-1", "--json"]
    held = {
        **env,
        "PIECEWORKS_PASSWORD": old,
        "PIECEWORKS_FAILPOINTS": "backup.lease-taken=sleep:6000",
    }
    backup = _start(backup_args, held, tmp_path)
    _wait_for_file(home / "backups" / "leases", backup, "bk-")
    changed = run(
        "key", "passwd", env={**env, "PIECEWORKS_PASSWORD": old, "PIECEWORKS_NEW_PASSWORD": new}
    )
    assert changed.code == 0, changed
    backed_up = _finish(backup, backup_args)
    assert backed_up.code == 0, backed_up
    backup_id = backed_up.json()["backup_id"]
    wrong = run("list", env={**env, "PIECEWORKS_PASSWORD": old})
    assert wrong.code == ExitCode.USAGE and "wrong passphrase" in wrong.err, wrong

    keys = run("key", "list", "--json").json()["keys"]
    other_id = added.json()["key_id"]
    assert other_id in [k["key_id"] for k in keys], keys
    target = home / "restored"
    restore_args = ["restore", backup_id, "--to-file", str(target)]
    held = {
        **env,
        "PIECEWORKS_PASSWORD": other,
        "PIECEWORKS_FAILPOINTS": "restore.chunk-written=sleep:6000",
    }
    restore = _start(restore_args, held, tmp_path)
    _wait_for_file(home, restore, ".restored.pw-restore-")  # a chunk is written
    removed = run("key", "remove", other_id, env={**env, "PIECEWORKS_PASSWORD": new})
    assert removed.code == 0, removed
    restored = _finish(restore, restore_args)
    assert restored.code == 0, restored
    assert target.read_bytes() == (home / "volumes" / "vol-1").read_bytes()
    _assert_consistent(run, env, home, new)


def test_a_copy_into_a_store_that_key_init_is_encrypting_stops_before_its_data(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """``pieceworks copy`` into an empty plain store while ``key init`` encrypts it.

    Before: the copy wrote plain chunks and a plain manifest next to the key
    (both exit 0). Now the copy, its lease taken, finds the init's marker and
    stops; the init encrypts the empty target.
    """
    one, two = tmp_path / "one", tmp_path / "two"
    conf = tmp_path / "stores.toml"
    conf.write_text(
        f'[stores.one]\ndriver = "posix"\npath = "{one}"\n'
        f'[stores.two]\ndriver = "posix"\npath = "{two}"\n',
        encoding="utf-8",
    )
    e = {**env, "PIECEWORKS_CONFIG": str(conf)}
    write_volume(home / "volumes", "vol-1", MiB)
    assert run("backup", "--volume", "vol-1", "--store", "one", env=e).code == 0
    init_args = ["key", "init", "--store", "two"]
    held = {
        **e,
        "PIECEWORKS_PASSWORD": PASSWORD,
        "PIECEWORKS_FAILPOINTS": "key.before-write=sleep:10000",
    }
    init = _start(init_args, held, tmp_path)
    _wait_for(two, init)  # the init opened the target; its check follows at once
    time.sleep(0.5)
    copied = run("copy", "--from-store", "one", "--to-store", "two", env=e, timeout=120)
    initialised = _finish(init, init_args)
    assert initialised.code == 0, initialised
    assert copied.code == ExitCode.FAILED, copied
    assert "a `pieceworks key init` is encrypting store 'two' right now" in copied.err, copied
    left = sorted(str(p.relative_to(two)) for p in two.rglob("*") if p.is_file())
    assert [n for n in left if not n.startswith("keys/")] == [], left
    again = run(
        "copy",
        "--from-store",
        "one",
        "--to-store",
        "two",
        env={**e, "PIECEWORKS_PASSWORD": PASSWORD},
    )
    assert again.code == 0, again
    listed = run("list", "--store", "two", "--json", env={**e, "PIECEWORKS_PASSWORD": PASSWORD})
    assert listed.code == 0 and len(listed.json()) == 1, listed
