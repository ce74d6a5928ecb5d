"""The store drivers' ``create`` option: opened with ``create=False``, a missing store is
`StoreMissing` naming it and nothing is made (a real directory, the real Swift and its S3 API).

Also the loaders above the drivers (`store_opener.open_store`,
`opening.open_store` with a configured name and origin, a store section's
own ``create = false``) and the job flows that only read (restore, verify),
which a conductor builds: they open their store without creating it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from swiftclient.client import Connection  # type: ignore[import-untyped]

from pieceworks.common_algorithms.jobs import backup_job_flow, restore_job_flow, verify_job_flow
from pieceworks.common_algorithms.opening import DriverSpec, open_objects, open_store
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.s3_store import S3Store
from pieceworks.drivers.store_opener import open_store as open_store_spec
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import BackendError, ConfigError, StoreMissing, StoreSpec
from tests.fixtures.swift_server import SwiftServer

ORIGIN = "/etc/pw.toml [stores.lab]"


def _name() -> str:
    return f"bakcups-{uuid.uuid4().hex[:12]}"


def _containers(server: SwiftServer) -> set[str]:
    conn = Connection(server.auth_url, server.user, server.key, auth_version="1.0", retries=0)
    try:
        return {str(c["name"]) for c in conn.get_account(full_listing=True)[1]}
    finally:
        conn.close()


def _buckets(server: SwiftServer) -> set[str]:
    client = boto3.client(
        "s3",
        endpoint_url=server.s3_endpoint,
        aws_access_key_id=server.s3_access_key,
        aws_secret_access_key=server.s3_secret_key,
        region_name=server.region,
    )
    return {str(b["Name"]) for b in client.list_buckets().get("Buckets", [])}


# -- posix ---------------------------------------------------------------------------


def test_posix_without_create_refuses_a_missing_directory_and_makes_nothing(
    tmp_path: Path,
) -> None:
    where = tmp_path / "srv" / "bakcups"
    with pytest.raises(StoreMissing) as err:
        PosixStore(where, create=False)
    assert f"posix store '{where}' does not exist" in str(err.value)
    assert err.value.location == f"posix store '{where}'"
    assert not (tmp_path / "srv").exists()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(StoreMissing):
        PosixStore(tmp_path / "dangling", create="false")
    assert not (tmp_path / "nowhere").exists()


def test_posix_without_create_refuses_a_directory_that_is_no_store(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    for name in ("notes.txt", "photos", "src", "zz"):
        (tmp_path / "home" / name).mkdir()
    with pytest.raises(StoreMissing) as err:
        PosixStore(tmp_path / "home", create=False)
    assert "is not a pieceworks store" in str(err.value)
    assert "4 other entries ('notes.txt', 'photos', 'src', ...)" in str(err.value)
    assert sorted(os.listdir(tmp_path / "home")) == ["notes.txt", "photos", "src", "zz"]


@pytest.mark.parametrize(
    "entries", [(), (".snapshot", "lost+found"), ("manifests",), ("chunks", "README")]
)
def test_posix_without_create_opens_an_empty_directory_or_a_store(
    tmp_path: Path, entries: tuple[str, ...]
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    for name in entries:
        (root / name).mkdir()
    store = PosixStore(root, create=False)
    store.put("manifests/x.json", b"{}")
    assert store.get("manifests/x.json") == b"{}"


def test_posix_without_create_refuses_a_file_as_before(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ConfigError, match="it is a file, not a directory"):
        PosixStore(tmp_path / "file", create=False)
    with pytest.raises(ConfigError, match=f"{tmp_path / 'file'} is not a directory"):
        PosixStore(tmp_path / "file" / "store", create=False)


def test_posix_without_create_never_makes_its_directory_again_on_a_write(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    store = PosixStore(root, create=False)
    root.rmdir()  # deleted while in use
    with pytest.raises(BackendError, match="does not exist"):
        store.put("leases/read.x", b"{}")
    assert not root.exists()


def test_posix_create_must_be_a_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="create must be true or false"):
        PosixStore(tmp_path, create="maybe")


# -- swift and s3 -----------------------------------------------------------------------


def test_swift_without_create_refuses_a_missing_container_and_makes_none(
    swift_server: SwiftServer,
) -> None:
    name = _name()
    with pytest.raises(StoreMissing) as err:
        SwiftStore(**swift_server.swift_options(name, retries="1"), create=False)
    assert f"no container '{name}'" in str(err.value)
    assert err.value.location.startswith(f"swift store '{name}' at http://127.0.0.1:")
    assert not {name, f"{name}_segments"} & _containers(swift_server)
    SwiftStore(**swift_server.swift_options(name), create="true").put("chunks/aa/x", b"1")
    again = SwiftStore(**swift_server.swift_options(name), create=False)
    assert again.get("chunks/aa/x") == b"1"


def test_s3_without_create_refuses_a_missing_bucket_and_makes_none(
    swift_server: SwiftServer,
) -> None:
    name = _name()
    with pytest.raises(StoreMissing) as err:
        S3Store(**swift_server.s3_options(name, retries="1"), create="no")
    assert f"no bucket '{name}'" in str(err.value)
    assert name not in _buckets(swift_server)
    S3Store(**swift_server.s3_options(name)).put("chunks/aa/x", b"1")
    assert S3Store(**swift_server.s3_options(name), create=False).get("chunks/aa/x") == b"1"


# -- the loaders -------------------------------------------------------------------------


def test_the_store_opener_passes_create_to_the_driver(tmp_path: Path) -> None:
    spec = StoreSpec("lab", "posix", {"path": str(tmp_path / "bakcups")})
    with pytest.raises(StoreMissing):
        open_store_spec(spec, create=False)
    assert not (tmp_path / "bakcups").exists()
    open_store_spec(spec)
    assert (tmp_path / "bakcups").is_dir()


def test_the_loader_names_the_configured_store_and_its_origin(tmp_path: Path) -> None:
    spec = DriverSpec("store", "lab", "posix", {"path": str(tmp_path / "bakcups")}, ORIGIN)
    for opener in (open_store, open_objects):
        with pytest.raises(StoreMissing) as err:
            opener(spec, create=False)
        assert str(err.value).startswith(f"{ORIGIN}: store 'lab': posix store ")
        assert err.value.store == "lab"
    assert not (tmp_path / "bakcups").exists()
    assert open_store(spec).name == "lab"  # create by default, as before
    assert (tmp_path / "bakcups").is_dir()


def test_a_section_saying_create_false_is_never_created(tmp_path: Path) -> None:
    options: dict[str, Any] = {"path": str(tmp_path / "bakcups"), "create": False}
    spec = DriverSpec("store", "lab", "posix", options, ORIGIN)
    with pytest.raises(StoreMissing):
        open_store(spec, create=True)
    assert not (tmp_path / "bakcups").exists()
    bad = DriverSpec("store", "lab", "posix", {**options, "create": 1}, ORIGIN)
    with pytest.raises(ConfigError, match="option 'create' must be a string or a boolean"):
        open_store(bad)


def test_the_built_in_default_store_is_made_even_without_create(tmp_path: Path) -> None:
    where = tmp_path / "home" / "backups"
    spec = DriverSpec("store", "local", "posix", {"path": str(where)}, "built-in default", (where,))
    assert open_store(spec, create=False).name == "local"
    assert where.is_dir()


def test_a_driver_without_the_option_is_opened_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pieceworks.registry import discovery  # noqa: PLC0415

    class OldStore(PosixStore):  # a third-party driver that predates the option
        def __init__(self, path: str) -> None:
            super().__init__(path)

    monkeypatch.setattr(discovery, "load_factory", lambda name, namespace: OldStore)
    spec = DriverSpec("store", "old", "old", {"path": str(tmp_path / "old")}, ORIGIN)
    assert open_store(spec, create=False).name == "old"
    assert (tmp_path / "old").is_dir()


# -- job flows a conductor builds -------------------------------------------------------


def _resolver(tmp_path: Path, store_path: Path) -> Callable[[str, str], dict[str, object]]:
    def resolve(kind: str, name: str) -> dict[str, object]:
        if kind == "backend":
            return {"name": name, "driver": "file", "options": {"path": str(tmp_path / "vols")}}
        return {"name": name, "driver": "posix", "options": {"path": str(store_path)}}

    return resolve


def test_jobs_that_read_never_create_their_store(tmp_path: Path) -> None:
    (tmp_path / "vols").mkdir()
    (tmp_path / "vols" / "vol").write_bytes(b"\1" * 65536)
    missing = tmp_path / "bakcups"
    resolve = _resolver(tmp_path, missing)
    with pytest.raises(StoreMissing, match="this host's store 'lab'"):
        restore_job_flow("local", "lab", {"backup_id": "bk-1", "volume_id": "v2"}, resolve)
    with pytest.raises(StoreMissing):
        verify_job_flow("lab", {"backup_id": "bk-1"}, resolve)
    assert not missing.exists()
    backup_job_flow("local", "lab", {"volume_id": "vol", "backup_id": "bk-1"}, resolve)
    assert missing.is_dir()  # a backup job makes its store, as before


def test_a_worker_that_does_not_see_the_store_declines_the_step(tmp_path: Path) -> None:
    """A worker opens its host's stores without creating them: a store it does not see is
    declined (the conductor runs the step), never made empty on the worker's host."""
    from pieceworks.common_algorithms.placement import NotServedHere, declining  # noqa: PLC0415

    spec = DriverSpec("store", "lab", "posix", {"path": str(tmp_path / "bakcups")}, ORIGIN)
    with pytest.raises(NotServedHere, match="store 'lab'"), declining():
        open_store(spec, create=False)
    assert not (tmp_path / "bakcups").exists()
