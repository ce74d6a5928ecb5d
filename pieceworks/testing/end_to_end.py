"""End-to-end conformance: backups of the driver restore to what the volume held.

Whatever capabilities the driver has, the common algorithms pick a strategy;
these checks run them as a user would (full backup, writes, incremental,
restore) and compare every restored byte with what the volume held.
"""

from __future__ import annotations

from pieceworks.common_algorithms import (
    Backend,
    BackupOutcome,
    BackupRequest,
    NoEligibleStrategy,
    RestoreRequest,
    Store,
    backup,
    restore,
)
from pieceworks.protocols import ISnapshot, IStreamIn, VolumeRef
from pieceworks.testing._util import filled, mixed, same
from pieceworks.testing.scratch import (
    CHUNK_BYTES,
    VOLUME_BYTES,
    CheckFailed,
    NotApplicable,
    Scratch,
    check,
)

__all__ = [
    "EndToEndTests",
    "full_backup_writes_incremental_restore",
    "incremental_after_a_stream_in_restores_the_new_content",
]


def _backup(s: Scratch, store: Store, volume: VolumeRef, *, incremental: bool) -> BackupOutcome:
    # The sampling guard at 100%: every chunk an enhancer let the backup skip is
    # re-read, so a lying changed-blocks or allocated-extents fails here every
    # time (at the default 1% the guard would only sometimes catch it, and then
    # hide it by a full read).
    request = BackupRequest(
        volume.volume_id,
        chunk_size=CHUNK_BYTES,
        in_use=s.provides(ISnapshot),
        incremental=incremental,
        guard_percent=100.0,
    )
    try:
        done = backup(Backend.of("pwt-under-test", s.driver), store, request)
    except NoEligibleStrategy as exc:
        raise NotApplicable(f"not applicable: no backup strategy: {exc}") from exc
    if done.failed:
        failures = "; ".join(f"{a.strategy}: {a.error}" for a in done.failed)
        raise CheckFailed(
            f"backup of {volume}: strategies failed before {done.strategy}: {failures}"
        )
    lies = done.guard.lies if done.guard is not None else ()
    if lies:  # a lie the guard caught; a note (change tracking lost: read in full) is not one
        raise CheckFailed(f"backup of {volume}: " + "; ".join(lie.message() for lie in lies))
    return done


def _restored(s: Scratch, store: Store, backup_id: str) -> bytes:
    target = s.helper_backend()
    restore(target, store, RestoreRequest(backup_id, "restored"))
    return s.helper_read(target, "restored")


@check("end-to-end", writes=True)
def full_backup_writes_incremental_restore(s: Scratch) -> None:
    """A full backup, writes through the backend, an incremental: each restores to
    what the volume held when it was taken."""
    objects, spec = s.store()
    store = Store(spec.name, objects, spec)
    size = s.size(VOLUME_BYTES * 2 + 1000)
    volume = s.volume(mixed(size, seed=40))
    full = _backup(s, store, volume, incremental=False)
    at_full = s.expected(volume)
    for i, offset in enumerate((100, CHUNK_BYTES + 5, size // 2, size - 300)):
        s.write(volume, offset, filled(250, seed=41 + i))
    incremental = _backup(s, store, volume, incremental=True)
    same(_restored(s, store, full.backup_id), at_full, "restore of the full backup")
    same(
        _restored(s, store, incremental.backup_id),
        s.expected(volume),
        "restore of the incremental backup after writes",
    )


@check("end-to-end")
def incremental_after_a_stream_in_restores_the_new_content(s: Scratch) -> None:
    """After a stream-in replaced the volume, an incremental backup restores to the new
    content (change tracking reset or ChangeTrackingLost, never stale chunks)."""
    s.need(IStreamIn)
    objects, spec = s.store()
    store = Store(spec.name, objects, spec)
    size = s.size(VOLUME_BYTES)
    volume = s.volume(mixed(size, seed=50))
    _backup(s, store, volume, incremental=False)
    s.stream_in(volume.volume_id, size, [(0, filled(size, seed=51))])
    incremental = _backup(s, store, volume, incremental=True)
    same(
        _restored(s, store, incremental.backup_id),
        s.expected(volume),
        "restore of an incremental taken after a stream-in",
    )


class EndToEndTests:
    """Backup and restore through the common algorithms, compared byte for byte."""

    def test_full_backup_writes_incremental_restore(self, pieceworks_scratch: Scratch) -> None:
        full_backup_writes_incremental_restore(pieceworks_scratch)

    def test_incremental_after_a_stream_in_restores_the_new_content(
        self, pieceworks_scratch: Scratch
    ) -> None:
        incremental_after_a_stream_in_restores_the_new_content(pieceworks_scratch)
