"""``key init`` racing the other writers of a store: replicate's staging and journal, prune.

A replication via the store stages chunks there (under a lease), and an
in-use source's temporary snapshot is journaled there (``runs/<id>``) before
any lease. Neither looked for ``key init``: a replication that opened the
store as plain wrote plain chunks or a plain journal into a store ``key
init`` had just encrypted, both exit 0 (`encryption_lock`'s module docstring
says why that is wrong). Now each writes first (its lease, its journal) and
then runs `require_still_plain`, as a backup does. ``prune`` writes no data
(its lock is under ``locks/``, which stays in clear): the last test shows it
racing ``key init`` leaves a consistent store.

Backend ``local`` (file) replicates to ``other`` (the offload test driver,
which native replication cannot reach), so the failpoint
``replicate.chunk-copied=raise`` fails the stream strategy and via-store runs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import MiB, Run, _start, with_plugins, write_volume
from tests.cli.test_key_init_races import PASSWORD, _finish, _wait_for, _wait_for_file

_CONFIG = """
[backends.local]
driver = "file"
path = "{home}/volumes"
[backends.other]
driver = "offload"
path = "{home}/other"
[stores.local]
driver = "posix"
path = "{home}/backups"
[engine]
persistence = "memory://"
"""
#: Where each backend keeps its volumes, under the home.
DIRS = {"local": "volumes", "other": "other"}
#: Native (file driver) and stream fail at once, so the replication goes via the store.
VIA_STORE = "replicate.native-filled=raise;replicate.chunk-copied=raise"


def _site(home: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` configured with backends ``local`` and ``other`` and store ``local``; a volume."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "other").mkdir()
    write_volume(home / "volumes", "vol-1", MiB)
    write_volume(home / "other", "vol-1", MiB)
    config = home / "config.toml"
    config.write_text(_CONFIG.format(home=home), encoding="utf-8")
    return with_plugins({**env, "PIECEWORKS_CONFIG": str(config)})


def _replicate(*extra: str, source: str = "local", target: str = "other") -> list[str]:
    return [
        "replicate", "--from-backend", source, "--volume", "vol-1",
        "--to-backend", target, "--to-volume", "copy", "--json", *extra,
    ]  # fmt: skip


def _store(home: Path) -> list[str]:
    root = home / "backups"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _data(home: Path) -> list[str]:
    """The store's objects other than key files."""
    return [n for n in _store(home) if not n.startswith("keys/")]


def _held_init(
    e: dict[str, str], home: Path, tmp_path: Path
) -> tuple[subprocess.Popen[str], list[str]]:
    """A ``key init`` held after finding the store empty, before writing its key."""
    args = ["key", "init", "--json"]
    held = {
        **e,
        "PIECEWORKS_PASSWORD": PASSWORD,
        "PIECEWORKS_FAILPOINTS": "key.before-write=sleep:10000",
    }
    init = _start(args, held, tmp_path)
    _wait_for_file(home / "backups" / "locks", init, "key-init.")
    time.sleep(0.5)  # the init's look at the store follows its marker at once
    return init, args


@pytest.mark.parametrize(
    ("source", "target"),
    [("local", "other"), ("other", "local")],
    ids=["manager-stages", "backend-pushes"],
)
def test_a_replication_while_key_init_is_between_its_check_and_its_key_stages_nothing(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path, source: str, target: str
) -> None:
    """key init held after finding the store empty; a whole replication via the store runs.

    The chunks are staged by the manager (source ``local``) or pushed by the
    source backend itself (``other``, offload: push-to-object-store).
    Before: both exited 0, and the store held the new key beside the plain
    chunks the replication staged. Now the replication, its lease taken,
    finds the init's marker and stops before staging; the init encrypts the
    empty store.
    """
    e = _site(home, env)
    init, init_args = _held_init(e, home, tmp_path)
    args = _replicate(source=source, target=target)
    replicated = run(*args, env={**e, "PIECEWORKS_FAILPOINTS": VIA_STORE}, timeout=120)
    initialised = _finish(init, init_args)
    assert initialised.code == 0, initialised
    assert replicated.code == ExitCode.FAILED, (replicated, _store(home))
    assert "a `pieceworks key init` is encrypting store 'local' right now" in replicated.err
    assert "this replication opened it as a plain store" in replicated.err, replicated
    assert "stopped before writing any data" in replicated.err, replicated
    assert _data(home) == [], _store(home)
    assert not (home / DIRS[target] / "copy").exists()


def test_key_init_while_a_replication_has_opened_the_store_stops_it_before_staging(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A replication opened the plain store and is held before its lease; key init runs whole.

    Before: the replication then staged plain chunks into the store key init
    had just encrypted, and exited 0. Now it takes its lease, finds the key
    and stops: exit 1, nothing of it in the store, no target volume.
    """
    e = _site(home, env)
    args = _replicate()
    held = {**e, "PIECEWORKS_FAILPOINTS": f"{VIA_STORE};replicate.before-lease=sleep:10000"}
    replication = _start(args, held, tmp_path)
    _wait_for(home / "backups", replication)  # the replication opened the store, as plain
    time.sleep(1.0)  # and reached its failpoint (the stream strategy fails at once)
    initialised = run("key", "init", env={**e, "PIECEWORKS_PASSWORD": PASSWORD})
    assert initialised.code == 0, initialised
    stopped = _finish(replication, args)
    assert stopped.code == ExitCode.FAILED, (stopped, _store(home))
    assert (
        "store 'local' was encrypted (`pieceworks key init`) after this replication" in stopped.err
    ), stopped
    assert "stopped before writing any data" in stopped.err, stopped
    assert _data(home) == [], _store(home)
    assert not (home / "other" / "copy").exists()
    again = run(*_replicate(), env={**e, "PIECEWORKS_PASSWORD": PASSWORD}, timeout=120)
    assert again.code == 0, again
    assert (home / "other" / "copy").read_bytes() == (home / "volumes" / "vol-1").read_bytes()


def test_a_key_appearing_while_chunks_are_staged_stops_before_the_target_is_filled(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """The last look, before the staged chunks are read back: a key file that appeared (a
    store that lists late could let an init miss the lease) stops the replication; its
    plain chunks are unreferenced, and prune removes them."""
    keyed = tmp_path / "keyed"
    made = run(
        "key", "init", env={**env, "PIECEWORKS_HOME": str(keyed), "PIECEWORKS_PASSWORD": PASSWORD}
    )
    assert made.code == 0, made
    (key_file,) = (keyed / "backups" / "keys").iterdir()
    e = _site(home, env)
    args = _replicate()
    held = {**e, "PIECEWORKS_FAILPOINTS": f"{VIA_STORE};replicate.staged=sleep:6000"}
    replication = _start(args, held, tmp_path)
    _wait_for_file(home / "backups" / "leases", replication)
    _wait_for(home / "backups" / "chunks", replication)
    time.sleep(1.0)  # 1 MiB of chunks is staged by now; the replication sleeps
    (home / "backups" / "keys").mkdir(exist_ok=True)
    (home / "backups" / "keys" / key_file.name).write_bytes(key_file.read_bytes())
    stopped = _finish(replication, args)
    assert stopped.code == ExitCode.FAILED, (stopped, _store(home))
    assert "the target volume was not written from them" in stopped.err, stopped
    assert not (home / "other" / "copy").exists()
    pruned = run("prune", env={**e, "PIECEWORKS_PASSWORD": PASSWORD})
    assert pruned.code == 0, pruned
    assert _data(home) == [], _store(home)


def test_an_in_use_replication_journals_nothing_plain_into_a_store_being_encrypted(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """key init held after finding the store empty; an in-use replication journals its
    temporary snapshot in the store (``runs/<id>``), before any lease, and is killed once
    the snapshot exists.

    Before: its plain journal stayed in the store key init then encrypted,
    and ``recover`` with the passphrase could not read it (the snapshot
    stayed). Now the replication looks after journaling, finds the init's
    marker, removes its journal and stops before taking the snapshot.
    """
    e = _site(home, env)
    init, init_args = _held_init(e, home, tmp_path)
    args = _replicate("--in-use")
    killed = {**e, "PIECEWORKS_FAILPOINTS": "replicate.snapshot-created=kill"}
    replicated = run(*args, env=killed, timeout=120)
    initialised = _finish(init, init_args)
    assert initialised.code == 0, initialised
    assert replicated.code == ExitCode.FAILED, (replicated, _store(home))
    assert "a `pieceworks key init` is encrypting store 'local' right now" in replicated.err
    assert _data(home) == [], _store(home)
    recovered = run("recover", "--json", env={**e, "PIECEWORKS_PASSWORD": PASSWORD})
    assert recovered.code == 0, recovered


def test_prune_racing_key_init_leaves_a_consistent_store(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """prune and forget only delete, and write under ``locks/`` (clear in an encrypted
    store): a prune run whole while key init is held after its look leaves nothing but the
    key, both exit 0; key init while a prune holds its lock refuses, naming the lock."""
    e = _site(home, env)
    init, init_args = _held_init(e, home, tmp_path)
    pruned = run("prune", env=e)
    initialised = _finish(init, init_args)
    assert pruned.code == 0 and initialised.code == 0, (pruned, initialised)
    assert _data(home) == [], _store(home)
    e = {**e, "PIECEWORKS_PASSWORD": PASSWORD}
    assert run("prune", env=e).code == 0

    bare = tmp_path / "bare"
    e = _site(bare, {**env, "PIECEWORKS_HOME": str(bare)})
    (bare / "backups").mkdir()  # prune never creates a store: an empty one exists
    held = {**e, "PIECEWORKS_FAILPOINTS": "gc.lock-taken=sleep:6000"}
    prune = _start(["prune"], held, tmp_path)
    _wait_for_file(bare / "backups" / "locks", prune, "gc")
    refused = run("key", "init", env={**e, "PIECEWORKS_PASSWORD": PASSWORD})
    assert refused.code == ExitCode.USAGE, refused
    assert "the store already holds objects (locks/gc" in refused.err, refused
    assert _finish(prune, ["prune"]).code == 0
    assert _store(bare) == [], _store(bare)
