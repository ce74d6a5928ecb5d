"""Garbage collection's grace period: a chunk younger than it is never deleted.

A Swift container listing may miss, for a while, a lease or a manifest
written just before (container updates are asynchronous). A collector
that missed them deleted the chunks a running backup had just stored;
now it keeps every unreferenced chunk younger than the grace (1 hour by
default on stores whose listings may lag, 0 on a local POSIX store).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from pieceworks.common_algorithms.gc.collection import (
    DEFAULT_GRACE,
    collect_garbage,
    default_grace,
)
from pieceworks.drivers import posix_store
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols.encrypted_store import EncryptedStore
from pieceworks.protocols.encryption import StoreKeys
from tests.fixtures.swift_server import SwiftServer
from tests.support.remote_stores import swift_store

FRESH = "chunks/ab/ab" + "1" * 62
OLD = "chunks/cd/cd" + "2" * 62


def test_a_fresh_unreferenced_chunk_survives_the_grace_and_an_old_one_goes(
    tmp_path: Path,
) -> None:
    """No lease and no manifest (as if the listing missed them): only the old chunk goes."""
    store = PosixStore(tmp_path / "store", durable=False)
    store.put(FRESH, b"fresh")
    store.put(OLD, b"old chunk")
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / "store" / OLD, (two_hours_ago, two_hours_ago))

    report = collect_garbage(store, grace=3600)
    assert (report.chunks_deleted, report.bytes_freed, report.chunks_in_grace) == (1, 9, 1)
    assert list(store.list("chunks/")) == [FRESH]
    assert report.to_dict("s")["chunks_in_grace"] == 1
    assert report.to_dict("s")["grace_seconds"] == 3600

    again = collect_garbage(store, grace=0)
    assert (again.chunks_deleted, again.chunks_in_grace) == (1, 0)
    assert list(store.list("chunks/")) == []


def test_a_dry_run_counts_kept_chunks_too(tmp_path: Path) -> None:
    store = PosixStore(tmp_path / "store", durable=False)
    store.put(FRESH, b"fresh")
    report = collect_garbage(store, grace=60, dry_run=True)
    assert (report.chunks_deleted, report.chunks_in_grace) == (0, 1)


def test_a_negative_grace_is_refused_before_anything_is_deleted(tmp_path: Path) -> None:
    store = PosixStore(tmp_path / "store", durable=False)
    store.put(OLD, b"x")
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="grace period must be 0 or more seconds"):
            collect_garbage(store, grace=bad)
    assert list(store.list("chunks/")) == [OLD]
    assert list(store.list("locks/")) == []


def test_the_default_grace_is_zero_only_where_listings_are_consistent(tmp_path: Path) -> None:
    """A local POSIX store says its listings are consistent; a network file system's are not."""
    local = PosixStore(tmp_path / "store", durable=False)
    assert local.consistent_listings is True
    assert default_grace(local) == 0.0
    assert default_grace(object()) == DEFAULT_GRACE  # type: ignore[arg-type]
    assert DEFAULT_GRACE >= 3600


def test_on_real_swift_a_chunk_stored_just_now_survives_a_default_collection(
    swift_server: SwiftServer,
) -> None:
    """Swift's listings may lag: the default grace applies; once older than the grace it goes."""
    store = swift_store(swift_server)
    store.put(FRESH, b"fresh")
    assert default_grace(store) == DEFAULT_GRACE

    report = collect_garbage(store)
    assert (report.chunks_deleted, report.chunks_in_grace) == (0, 1)
    assert report.grace_seconds == DEFAULT_GRACE
    assert list(store.list("chunks/")) == [FRESH]

    time.sleep(1.2)  # Swift's clock stamps the object; it cannot be moved back
    report = collect_garbage(store, grace=1)
    assert (report.chunks_deleted, report.chunks_in_grace) == (1, 0)
    assert list(store.list("chunks/")) == []


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /mnt/backups rw,relatime shared:20 - nfs4 nas:/export rw,vers=4.2
41 40 0:41 / /mnt/backups/local\\040disk rw - xfs /dev/sdb1 rw
42 22 0:42 / /mnt/sshfs rw - fuse.sshfs host:/ rw
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/srv/store", "ext4"),
        ("/mnt/backups", "nfs4"),
        ("/mnt/backups/store", "nfs4"),
        ("/mnt/backupsX/store", "ext4"),  # a longer name, not under the mount point
        ("/mnt/backups/local disk/store", "xfs"),  # an escaped space; the deeper mount wins
        ("/mnt/sshfs/x", "fuse.sshfs"),
    ],
)
def test_the_file_system_of_a_store_is_read_from_mountinfo(
    tmp_path: Path, path: str, kind: str
) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)
    assert posix_store._filesystem_type(path, str(mountinfo)) == kind


def test_a_store_on_a_network_file_system_keeps_the_default_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NFS clients may list a directory from a cache: such a store gets the grace; so does
    one whose file system cannot be told (no /proc)."""
    real = posix_store._filesystem_type
    assert real("/", str(tmp_path / "no-such-file")) is None
    for kind, consistent in (("nfs4", False), ("fuse.sshfs", False), (None, False)):
        monkeypatch.setattr(posix_store, "_filesystem_type", lambda path, k=kind: k)
        store = PosixStore(tmp_path / "store", durable=False)
        assert store.consistent_listings is consistent
        assert default_grace(store) == DEFAULT_GRACE


def test_an_encrypted_store_has_the_grace_of_the_store_it_seals_into(tmp_path: Path) -> None:
    """`pieceworks key init` wraps the store: the wrapper kept young chunks on a local disk."""
    local = PosixStore(tmp_path / "store", durable=False)
    keys = StoreKeys.from_master(bytes(range(32)))
    sealed = EncryptedStore(local, keys)
    assert sealed.consistent_listings is True
    assert default_grace(sealed) == 0.0
    unknown: Any = object()
    assert default_grace(EncryptedStore(unknown, keys)) == DEFAULT_GRACE
