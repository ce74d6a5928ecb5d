"""Conformance checks of push-to-object-store and pull-from-object-store: `OffloadTests`.

A push is checked by what matters to a user: the backup it makes restores,
through the common restore into another backend, byte for byte; a pull by
restoring a backup made by another backend into the driver.
"""

from __future__ import annotations

from typing import cast

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    restore,
)
from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import IPullFromObjectStore, IPushToObjectStore, VolumeRef
from pieceworks.testing._util import mixed, same
from pieceworks.testing.scratch import (
    CHUNK_BYTES,
    VOLUME_BYTES,
    CheckFailed,
    NotApplicable,
    Scratch,
    check,
)

__all__ = [
    "OffloadTests",
    "a_pull_restores_a_backup_made_elsewhere",
    "a_push_restores_through_the_common_restore",
]


def _store(s: Scratch) -> Store:
    objects, spec = s.store()
    return Store(spec.name, objects, spec)


def _under_test(s: Scratch) -> Backend:
    return Backend.of("pwt-under-test", s.driver)


@check("push-to-object-store")
def a_push_restores_through_the_common_restore(s: Scratch) -> None:
    """A backup by offload (the driver pushes into a POSIX store itself) restores into
    a file backend, byte for byte."""
    s.need(IPushToObjectStore)
    volume = s.volume(mixed(s.size(VOLUME_BYTES + 4000), seed=30))
    store = _store(s)
    request = BackupRequest(volume.volume_id, chunk_size=CHUNK_BYTES, strategies=("offload",))
    done = backup(_under_test(s), store, request)
    if done.size != len(s.expected(volume)):
        raise CheckFailed(
            f"push: the backup says size {done.size}, the volume has {len(s.expected(volume))}"
        )
    target = s.helper_backend()
    restore(target, store, RestoreRequest(done.backup_id, "restored"))
    same(s.helper_read(target, "restored"), s.expected(volume), "push then restore")


@check("pull-from-object-store")
def a_pull_restores_a_backup_made_elsewhere(s: Scratch) -> None:
    """A backup made by a file backend restores into the driver by offload (pull),
    byte for byte."""
    s.need(IPullFromObjectStore)
    if not s.can_read():
        raise NotApplicable("not applicable: the suite cannot read this driver's volumes")
    source = s.helper_backend()
    data = mixed(s.size(VOLUME_BYTES + 4000), seed=31)
    cast(FileDriver, source.driver).write_volume(VolumeRef("original"), data)
    store = _store(s)
    made = backup(source, store, BackupRequest("original", chunk_size=CHUNK_BYTES))
    volume_id = s.new_id()
    restore(
        _under_test(s), store, RestoreRequest(made.backup_id, volume_id, strategies=("offload",))
    )
    s.model[volume_id] = bytearray(data)
    same(s.read(VolumeRef(volume_id)), data, "a pull into the driver")


class OffloadTests:
    """The push and pull checks; each skips itself when the driver lacks it."""

    def test_a_push_restores_through_the_common_restore(self, pieceworks_scratch: Scratch) -> None:
        a_push_restores_through_the_common_restore(pieceworks_scratch)

    def test_a_pull_restores_a_backup_made_elsewhere(self, pieceworks_scratch: Scratch) -> None:
        a_pull_restores_a_backup_made_elsewhere(pieceworks_scratch)
