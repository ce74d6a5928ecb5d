"""``pieceworks key``: what it says when a passphrase is missing, and times in UTC.

``key add``, ``key passwd`` and ``key remove`` on a store that is not
encrypted asked for "the passphrase of encrypted store 'local'"; they now
say it is not encrypted (exit 2, ``not-encrypted``) before asking anything.
``key init`` without a passphrase said the store "is encrypted" although
that is what it was about to do. ``key list`` printed creation times in the
local time zone without saying so; text times are ISO 8601 in UTC.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.output import iso_time
from tests.cli.conftest import COMMAND, Call, MiB, Run, RunAll, write_volume


@pytest.mark.parametrize(
    "args", [["key", "add"], ["key", "passwd"], ["key", "remove", "0123456789abcdef"]]
)
def test_changing_keys_of_a_store_that_is_not_encrypted_says_so(
    call: Call, env: dict[str, str], args: list[str]
) -> None:
    done = call(*args, "--json", env=env)
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "not-encrypted", error
    assert "not encrypted" in error["message"], error


def test_key_init_without_a_passphrase_says_the_store_is_to_be_encrypted(
    call: Call, env: dict[str, str]
) -> None:
    done = call("key", "init", env=env)
    assert done.code == ExitCode.USAGE, done
    assert "store 'local' is to be encrypted: give its passphrase" in done.err, done


def test_key_list_shows_creation_times_in_utc(run: Run, env: dict[str, str]) -> None:
    e = {**env, "PIECEWORKS_PASSWORD": "a long passphrase", "TZ": "Asia/Tokyo"}
    init = run("key", "init", "--json", env=e)
    assert init.code == 0, init
    keys = run("key", "list", "--json", env=e).json()["keys"]
    listed = run("key", "list", env=e)
    row = listed.out.splitlines()[1]
    created = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row)
    assert created is not None, listed
    assert created.group(0) == iso_time(keys[0]["created"])


def test_two_removals_at_once_never_leave_the_store_without_a_key(
    run: Run, run_all: RunAll, env: dict[str, str], home: Path
) -> None:
    """Two ``key remove`` at once, of the two keys of a store, both saw two keys and both
    deleted theirs: no key was left and every backup was lost. The failpoint holds each
    between its check and its delete, so both pass the check every time."""
    e = {**env, "PIECEWORKS_PASSWORD": "a long passphrase"}
    assert run("key", "init", env=e).code == 0
    added = run("key", "add", env={**e, "PIECEWORKS_NEW_PASSWORD": "a long passphrase"})
    assert added.code == 0, added
    write_volume(home / "volumes", "vol-1", MiB)
    backed_up = run("backup", "--volume", "vol-1", "--json", env=e)
    assert backed_up.code == 0, backed_up
    first, second = (k["key_id"] for k in run("key", "list", "--json", env=e).json()["keys"])
    held = {**e, "PIECEWORKS_FAILPOINTS": "key.before-remove=sleep:1500"}
    done = run_all([(["key", "remove", first], held), (["key", "remove", second], held)])
    left = run("key", "list", "--json", env=e)
    assert left.code == 0, (done, left)
    assert len(left.json()["keys"]) >= 1
    refused = [d for d in done if d.code != 0]
    assert refused, done  # both succeeding is the loss
    for d in refused:
        assert d.code == ExitCode.USAGE, d
        assert "another key removal ran at the same time" in d.err, d
    restored = run("restore", backed_up.json()["backup_id"], "--to-file", str(home / "r"), env=e)
    assert restored.code == 0, restored
    assert (home / "r").read_bytes() == (home / "volumes" / "vol-1").read_bytes()


def test_two_inits_at_once_leave_one_master_key(
    run: Run, run_all: RunAll, env: dict[str, str], home: Path
) -> None:
    """Two ``key init`` at once both found the store empty and each wrote a key holding its
    own master key, both exit 0: backups sealed under one could never be opened with the
    other's passphrase. Now at most one keeps its key; a second init is refused."""
    held = {**env, "PIECEWORKS_FAILPOINTS": "key.before-write=sleep:1500"}
    done = run_all(
        [
            (["key", "init"], {**held, "PIECEWORKS_PASSWORD": "passphrase of one"}),
            (["key", "init"], {**held, "PIECEWORKS_PASSWORD": "passphrase of two"}),
        ]
    )
    refused = [d for d in done if d.code != 0]
    assert refused, done
    for d in refused:
        assert d.code == ExitCode.USAGE, d
        assert "another `key init` ran at the same time" in d.err, d
    listed = run("key", "list", "--json", env=env)
    kept = len(done) - len(refused)
    if kept:
        assert listed.code == 0 and len(listed.json()["keys"]) == 1, listed
    else:  # both stepped back: still a plain, empty store, and init works
        assert run("key", "init", env={**env, "PIECEWORKS_PASSWORD": "p"}).code == 0


def test_a_damaged_key_file_does_not_lock_out_the_other_keys(
    run: Run, env: dict[str, str], home: Path
) -> None:
    """One damaged key file of two stopped every command, ``key list`` and ``key remove``
    included (``key file ... is not valid JSON``, exit 4): the second passphrase, kept
    for exactly that, opened nothing, and the damaged file could not be removed."""
    one, two = {**env, "PIECEWORKS_PASSWORD": "first one"}, {**env, "PIECEWORKS_PASSWORD": "2nd"}
    assert run("key", "init", env=one).code == 0
    assert run("key", "add", env={**one, "PIECEWORKS_NEW_PASSWORD": "2nd"}).code == 0
    write_volume(home / "volumes", "vol-1", MiB)
    assert run("backup", "--volume", "vol-1", env=one).code == 0
    first = run("key", "list", "--json", env=env).json()["keys"][0]["key_id"]
    (home / "backups" / "keys" / f"{first}.json").write_text("garbage")

    assert run("list", env=two).code == 0  # the intact key opens the store
    wrong = run("list", env=one)
    assert wrong.code == ExitCode.USAGE, wrong
    assert "none of the store's 1 intact key(s) opens with it (1 more damaged" in wrong.err
    listed = run("key", "list", env=env)
    assert listed.code == ExitCode.CORRUPT, listed
    assert f"{first}  DAMAGED: key file keys/{first}.json is not valid JSON" in listed.out
    assert run("key", "remove", first, env=two).code == 0  # removed with the other key
    assert run("key", "list", env=env).code == 0


def test_removing_the_new_key_while_passwd_replaces_the_old_never_leaves_no_key(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """``key passwd`` wrote its new key and is about to delete the old one; ``key remove``
    of the new key (listed as soon as written) runs meanwhile and sees two keys. Both
    exited 0 and the store had no key left: every backup lost. Now passwd, finding no key
    after its delete, puts the old key back and refuses; the old passphrase still opens."""
    old, new = "the old passphrase", "the new passphrase"
    assert run("key", "init", env={**env, "PIECEWORKS_PASSWORD": old}).code == 0
    write_volume(home / "volumes", "vol-1", MiB)
    backed_up = run(
        "backup", "--volume", "vol-1", "--json", env={**env, "PIECEWORKS_PASSWORD": old}
    )
    assert backed_up.code == 0, backed_up
    keys = home / "backups" / "keys"
    (old_key,) = [p.name for p in keys.glob("*.json")]
    held = {
        **env,
        "PIECEWORKS_PASSWORD": old,
        "PIECEWORKS_NEW_PASSWORD": new,
        "PIECEWORKS_FAILPOINTS": "key.before-remove=sleep:8000",
    }
    passwd = subprocess.Popen(
        [*COMMAND, "key", "passwd"],
        env=held,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(list(keys.glob("*.json"))) < 2:  # the new key is written; passwd sleeps
        assert passwd.poll() is None and time.monotonic() < deadline, passwd.communicate()
        time.sleep(0.05)
    (new_key,) = [p.name for p in keys.glob("*.json") if p.name != old_key]
    removed = run(
        "key", "remove", new_key.removesuffix(".json"), env={**env, "PIECEWORKS_PASSWORD": new}
    )
    out, err = passwd.communicate(timeout=60)
    assert removed.code == 0, removed
    assert passwd.returncode == ExitCode.USAGE, (out, err)
    assert "the passphrase was not changed: the new key" in err, err
    assert [p.name for p in keys.glob("*.json")] == [old_key]
    target = home / "restored"
    restored = run(
        "restore", backed_up.json()["backup_id"], "--to-file", str(target),
        env={**env, "PIECEWORKS_PASSWORD": old},
    )  # fmt: skip
    assert restored.code == 0, restored
    assert target.read_bytes() == (home / "volumes" / "vol-1").read_bytes()
