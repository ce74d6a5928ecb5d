"""The markers that keep ``key init`` and plain backups apart, on a real posix store.

The end-to-end races (processes held open by failpoints) are in
``tests/cli/test_key_init_races.py``; here each rule of
`pieceworks.common_algorithms.encryption_lock` is checked on its own.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from pieceworks.common_algorithms.encryption_lock import (
    KEY_INIT_PREFIX,
    OTHERS_SHOWN,
    StoreEncryptedMeanwhile,
    key_init_marked,
    obstacles_to_init,
    require_still_plain,
)
from pieceworks.common_algorithms.gc.leases import lease_key, put_marker, read_lease
from pieceworks.common_algorithms.keys import KdfParams, KeyRefused, init_keys, unlock
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols.encrypted_store import EncryptedStore
from pieceworks.protocols.owner import Owner

FAST = KdfParams(n=1 << 10, r=8, p=1)  # the tests' scrypt: cheap, same code path


def _dead_owner() -> Owner:
    """An owner on this host whose process is gone (its pid now has another start time)."""
    me = Owner.current()
    return dataclasses.replace(me, start=(me.start or 0) + 12345)


def test_an_empty_store_has_no_obstacle_and_the_marker_goes_after(tmp_path: Path) -> None:
    store = PosixStore(tmp_path)
    with key_init_marked(store) as marker:
        assert marker.startswith(KEY_INIT_PREFIX)
        assert list(store.list("")) == [marker]
        assert not obstacles_to_init(store, marker)
    assert list(store.list("")) == []


def test_obstacles_are_sorted_by_kind_and_a_dead_init_is_none(tmp_path: Path) -> None:
    """A live lease, a live init, a key, a chunk: each named; a dead init's marker is not one."""
    store = PosixStore(tmp_path)
    me, dead = Owner.current(), _dead_owner()
    put_marker(store, lease_key("bk-1"), "lease", "bk-1", me, time.time())
    put_marker(store, f"{KEY_INIT_PREFIX}{dead.token}", "key-init", "key-init", dead, time.time())
    with key_init_marked(store) as marker:
        found = obstacles_to_init(store, marker)
        assert [m.key for m in found.leases] == ["leases/bk-1"]
        assert found.leases[0].state == "alive"
        assert found.stale_inits == [f"{KEY_INIT_PREFIX}{dead.token}"]
        assert found.inits == [] and found.keys == [] and found.other == []
        assert "a backup is being written into this store (backup bk-1 (host " in found.message()

        other = Owner.current()
        put_marker(store, f"{KEY_INIT_PREFIX}{other.token}", "key-init", "x", other, time.time())
        store.put("chunks/ab/abcd", b"data")
        found = obstacles_to_init(store, marker)
        assert [m.key for m in found.inits] == [f"{KEY_INIT_PREFIX}{other.token}"]
        assert found.other == ["chunks/ab/abcd"]
        assert found.message().startswith("another `key init` ran at the same time")


def test_init_keys_refuses_a_live_lease_and_writes_no_key(tmp_path: Path) -> None:
    store = PosixStore(tmp_path)
    put_marker(store, lease_key("bk-1"), "lease", "bk-1", Owner.current(), time.time())
    with pytest.raises(KeyRefused, match="a backup is being written into this store"):
        init_keys(store, "a passphrase", FAST)
    assert list(store.list("")) == ["leases/bk-1"]  # no key, no marker left


def test_init_keys_removes_the_marker_of_a_dead_init(tmp_path: Path) -> None:
    store = PosixStore(tmp_path)
    dead = _dead_owner()
    put_marker(store, f"{KEY_INIT_PREFIX}{dead.token}", "key-init", "key-init", dead, time.time())
    key_id = init_keys(store, "a passphrase", FAST)
    assert list(store.list("")) == [f"keys/{key_id}.json"]


def test_a_plain_store_that_got_a_key_stops_a_backup(tmp_path: Path) -> None:
    """After the lease: "before writing any data"; before the manifest: "not written"."""
    store = PosixStore(tmp_path)
    require_still_plain("lab", store)  # plain, nobody encrypting: fine
    init_keys(store, "a passphrase", FAST)
    with pytest.raises(StoreEncryptedMeanwhile, match="stopped before writing any data"):
        require_still_plain("lab", store)
    with pytest.raises(StoreEncryptedMeanwhile, match="its manifest was not written"):
        require_still_plain("lab", store, before_data=False)
    # Opened as encrypted, there is nothing to check.
    require_still_plain("lab", EncryptedStore(store, unlock(store, "a passphrase")))


def test_a_running_init_stops_a_backup_before_its_data_but_a_dead_one_does_not(
    tmp_path: Path,
) -> None:
    store = PosixStore(tmp_path)
    dead = _dead_owner()
    put_marker(store, f"{KEY_INIT_PREFIX}{dead.token}", "key-init", "key-init", dead, time.time())
    require_still_plain("lab", store)
    assert list(store.list("")) == []  # the dead init's marker is gone
    with key_init_marked(store):
        with pytest.raises(StoreEncryptedMeanwhile, match="is encrypting store 'lab' right now"):
            require_still_plain("lab", store)
        # Before the manifest, the lease has been held since the first look: an init
        # that began since then saw it and steps back, so only key files count.
        require_still_plain("lab", store, before_data=False)


def test_a_big_store_is_refused_after_a_few_objects_named(tmp_path: Path) -> None:
    """Only the first objects are listed (a store of millions is refused as fast as one)."""
    store = PosixStore(tmp_path)
    for i in range(10):
        store.put(f"chunks/{i:02x}/{i:064x}", b"x")
    with key_init_marked(store) as marker:
        found = obstacles_to_init(store, marker)
    assert len(found.other) == OTHERS_SHOWN + 1
    assert found.message().startswith(
        f"the store already holds objects ({', '.join(found.other[:OTHERS_SHOWN])}, ...)"
    )
    with pytest.raises(KeyRefused, match="the store already holds objects"):
        init_keys(store, "a passphrase", FAST)
    assert not any(name.startswith(("keys/", "locks/")) for name in store.list(""))


def test_a_restore_reading_is_named_as_a_reader_not_as_a_backup_written(tmp_path: Path) -> None:
    """A read lease (``leases/read.<token>``) is no backup being written: the store holds
    backups, and the refusal names the objects and the reader."""
    store = PosixStore(tmp_path)
    store.put("manifests/bk-1.json", b"{}")
    with (
        read_lease(store, "restore", ["bk-1"], renew_every=None),
        key_init_marked(store) as marker,
    ):
        found = obstacles_to_init(store, marker)
        message = found.message()
    assert message.startswith(
        "the store already holds objects (manifests/bk-1.json; restore reading backup bk-1 (host "
    ), message
    assert "being written" not in message
