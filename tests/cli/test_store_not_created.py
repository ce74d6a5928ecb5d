"""A command that only reads a store never creates it (real CLI, real directories, real Swift).

A misspelt store (a POSIX path, a Swift container, an S3 bucket that does
not exist) used to be created, empty, by whichever command opened it first:
``check`` then said "no problems found", ``list`` showed nothing with exit
0, ``restore`` and ``verify`` said the backup did not exist. Every command
that reads now exits 3 naming the store (`StoreMissing`), and afterwards the
store still does not exist: no directory, no container (nor its segment
container), no bucket. A backup still creates a new store, which the reading
commands then open.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from swiftclient.client import Connection  # type: ignore[import-untyped]

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import MiB, Result, RunAll, config_file, write_volume
from tests.fixtures.swift_server import SwiftServer

#: Every command that reads the store (``X`` stands for a backup id), with what it needs.
READERS: tuple[tuple[str, ...], ...] = (
    ("list",),
    ("list", "--json"),
    ("show", "bk-missing"),
    ("stats",),
    ("check",),
    ("diff", "bk-missing", "bk-other"),
    ("verify", "bk-missing"),
    ("restore", "bk-missing", "--volume", "restored"),
    ("restore", "bk-missing", "--to-file", "{tmp}/restored.img"),
    ("forget", "--keep-last", "1"),
    ("prune",),
    ("gc",),
    ("delete", "bk-missing"),
    ("recover",),
    ("key", "list"),
    ("key", "add"),
    ("plan", "backup", "--volume", "vol"),
    ("plan", "restore", "bk-missing"),
    ("find", "--kind", "task"),
    ("copy", "--from-store", "lab", "--to-store", "good"),
)


def _name() -> str:
    """A fresh container / bucket name nobody has made (valid for both APIs)."""
    return f"bakcups-{uuid.uuid4().hex[:12]}"


def _swift_names(server: SwiftServer) -> set[str]:
    conn = Connection(server.auth_url, server.user, server.key, auth_version="1.0", retries=0)
    try:
        _headers, containers = conn.get_account(full_listing=True)
    finally:
        conn.close()
    return {str(c["name"]) for c in containers}


def _s3_names(server: SwiftServer) -> set[str]:
    client = boto3.client(
        "s3",
        endpoint_url=server.s3_endpoint,
        aws_access_key_id=server.s3_access_key,
        aws_secret_access_key=server.s3_secret_key,
        region_name=server.region,
    )
    return {str(b["Name"]) for b in client.list_buckets().get("Buckets", [])}


def _toml(options: dict[str, str]) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())


def _setup(
    driver: str, tmp_path: Path, swift: SwiftServer | None
) -> tuple[dict[str, str], str, Callable[[], bool]]:
    """The ``lab`` store's options, the name that must show in messages, and whether it exists."""
    quick = {"retries": "1", "backoff": "0.05"}
    if driver == "posix":
        path = tmp_path / "srv" / "bakcups"
        return {"path": str(path)}, str(path), path.exists
    assert swift is not None
    name = _name()
    if driver == "swift":
        return (
            swift.swift_options(name, **quick),
            name,
            lambda: bool({name, f"{name}_segments"} & _swift_names(swift)),
        )
    return swift.s3_options(name, **quick), name, lambda: name in _s3_names(swift)


def _check_store_is_never_created(
    driver: str,
    tmp_path: Path,
    env: dict[str, str],
    run_all: RunAll,
    swift: SwiftServer | None,
) -> None:
    options, named, exists = _setup(driver, tmp_path, swift)
    write_volume(tmp_path / "volumes", "vol", 2 * MiB, seed=3)
    config = config_file(
        tmp_path,
        '[engine]\npersistence = "memory://"\n'
        f'[backends.local]\ndriver = "file"\npath = "{tmp_path / "volumes"}"\n'
        f'[stores.lab]\ndriver = "{driver}"\n{_toml(options)}'
        f'[stores.good]\ndriver = "posix"\npath = "{tmp_path / "good"}"\n',
    )
    e = {**env, "PIECEWORKS_CONFIG": str(config), "PIECEWORKS_PASSWORD": "not-used-here"}
    assert not exists()
    commands = [
        [*(a.format(tmp=tmp_path) for a in args), *([] if "copy" in args else ["--store", "lab"])]
        for args in READERS
    ]
    results = run_all([(c, e) for c in commands], timeout=300)

    def wrong(r: Result) -> bool:
        return (
            r.code != ExitCode.NOT_FOUND
            or "store 'lab'" not in r.err
            or named not in r.err
            or "does not exist" not in r.err
        )

    assert not [r for r in results if wrong(r)], "\n".join(str(r) for r in results if wrong(r))
    failed = json.loads(next(r for r in results if "--json" in r.args).err.splitlines()[-1])
    assert failed["reference"] == "store-missing"
    assert failed["context"]["store"] == "lab"
    assert not exists(), "a command that only reads created the store"
    assert not (tmp_path / "restored.img").exists()

    backup = run_all([(["backup", "--volume", "vol", "--store", "lab", "--json"], e)])[0]
    assert backup.code == ExitCode.OK, backup
    assert exists()
    listed = run_all([(["list", "--store", "lab", "--json"], e)])[0]
    assert listed.code == ExitCode.OK, listed
    assert backup.json()["backup_id"] in listed.out


@pytest.mark.timeout(600)
def test_reading_commands_never_create_a_posix_store(
    tmp_path: Path, env: dict[str, str], run_all: RunAll
) -> None:
    _check_store_is_never_created("posix", tmp_path, env, run_all, None)


@pytest.mark.timeout(600)
def test_reading_commands_never_create_a_swift_container(
    tmp_path: Path, env: dict[str, str], run_all: RunAll, swift_server: SwiftServer
) -> None:
    _check_store_is_never_created("swift", tmp_path, env, run_all, swift_server)


@pytest.mark.timeout(600)
def test_reading_commands_never_create_an_s3_bucket(
    tmp_path: Path, env: dict[str, str], run_all: RunAll, swift_server: SwiftServer
) -> None:
    _check_store_is_never_created("s3", tmp_path, env, run_all, swift_server)


def test_recover_skips_a_configured_store_that_does_not_exist_and_creates_none(
    tmp_path: Path, env: dict[str, str], run_all: RunAll
) -> None:
    """Over every store, one that was never created has nothing to recover: a warning names
    it, the others are recovered, exit 0, and it is still not there; named, it is exit 3."""
    (tmp_path / "store").mkdir()
    config = config_file(
        tmp_path,
        '[engine]\npersistence = "memory://"\n'
        f'[stores.lab]\ndriver = "posix"\npath = "{tmp_path / "store"}"\n'
        f'[stores.offsite]\ndriver = "posix"\npath = "{tmp_path / "offsite"}"\n',
    )
    e = {**env, "PIECEWORKS_CONFIG": str(config)}
    every, named = run_all([(["recover", "--json"], e), (["recover", "--store", "offsite"], e)])
    assert every.code == ExitCode.OK, every
    assert "nothing to recover in store 'offsite'" in every.err, every
    assert every.json()["message_type"] == "summary"
    assert named.code == ExitCode.NOT_FOUND and "store 'offsite'" in named.err, named
    assert not (tmp_path / "offsite").exists()
