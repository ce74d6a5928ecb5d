"""Conformance checks of changed-blocks (`IChangedBlocks`): `ChangedBlocksTests`.

The central check is property-based (hypothesis): random sets of writes,
on the volume or between two snapshots, must all be covered by
`changed_extents`. ``PIECEWORKS_CHECK_EXAMPLES`` (default 25) sets how many
write sets it draws; each example uses a fresh volume.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pieceworks.protocols import (
    ChangeTrackingLost,
    Extent,
    IChangedBlocks,
    ISnapshot,
    IStreamIn,
    Source,
)
from pieceworks.testing._util import filled, mixed
from pieceworks.testing.scratch import (
    VOLUME_BYTES,
    CheckFailed,
    Scratch,
    check,
    uncovered,
    well_formed,
)

__all__ = [
    "ChangedBlocksTests",
    "a_token_taken_on_a_snapshot_describes_the_snapshot",
    "after_a_stream_in_an_old_token_is_refused_or_covers_everything",
    "changed_extents_cover_every_write",
    "unknown_tokens_raise_change_tracking_lost",
]

#: Write sets the property check draws (``PIECEWORKS_CHECK_EXAMPLES``).
EXAMPLES = int(os.environ.get("PIECEWORKS_CHECK_EXAMPLES", "25"))
_SCALE = (1 << 20) - 1

#: One write: where (a fraction of the volume, in 1/_SCALE) and how long (bytes).
_WRITE = st.tuples(st.integers(0, _SCALE), st.integers(1, 40_000))


def _ranges(draws: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The drawn writes as ``(offset, length)`` inside a `size`-byte volume."""
    out = []
    for where, length in draws:
        offset = where * (size - 1) // _SCALE
        out.append((offset, min(length, size - offset)))
    return out


def _changed(s: Scratch, source: Source, token: str) -> list[Extent] | None:
    """`changed_extents(source, token)`, checked well formed; None if tracking was lost."""
    try:
        extents = list(s.use(IChangedBlocks).changed_extents(source, token))
    except ChangeTrackingLost:
        return None
    well_formed(extents, len(s.expected(source)), f"changed_extents({source})")
    return extents


def _require_cover(extents: list[Extent], written: list[tuple[int, int]], what: str) -> None:
    gaps = uncovered(written, extents)
    if gaps:
        where = ", ".join(f"{o}..{o + n}" for o, n in gaps[:8])
        raise CheckFailed(
            f"changed-blocks: {what}: bytes written at {where} are in no changed extent"
            f" (reported: {extents[:8]}): an incremental backup would keep stale data"
        )


@check("changed-blocks", writes=True)
def changed_extents_cover_every_write(s: Scratch) -> None:
    """For random write sets, ``changed_extents(token)`` covers every byte written since
    `token`, whether the token and the read are of the volume or of two snapshots
    (or it raises ChangeTrackingLost)."""
    s.need(IChangedBlocks)
    tracker = s.use(IChangedBlocks)
    size = s.size(VOLUME_BYTES)
    snapshots = s.provides(ISnapshot)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(draws=st.lists(_WRITE, min_size=1, max_size=8), on_snapshots=st.booleans())
    def writes_are_covered(draws: list[tuple[int, int]], on_snapshots: bool) -> None:
        volume = s.volume(mixed(size, seed=len(draws)))
        try:
            use_snapshots = on_snapshots and snapshots
            before: Source = s.snapshot(volume) if use_snapshots else volume
            token = tracker.change_token(before)
            written = _ranges(draws, size)
            for i, (offset, length) in enumerate(written):
                s.write(volume, offset, filled(length, seed=offset + i))
            after: Source = s.snapshot(volume) if use_snapshots else volume
            extents = _changed(s, after, token)
            if extents is not None:
                _require_cover(extents, written, f"writes since a token of {before}")
        finally:
            s.discard(volume)

    writes_are_covered()


@check("changed-blocks", writes=True)
def a_token_taken_on_a_snapshot_describes_the_snapshot(s: Scratch) -> None:
    """A token taken on a snapshot stands for the snapshot's content, not the volume's
    at the time the token is asked: a write made after the snapshot but before its
    token shows as changed in a later snapshot."""
    s.need(IChangedBlocks, ISnapshot)
    tracker = s.use(IChangedBlocks)
    size = s.size(VOLUME_BYTES)
    volume = s.volume(mixed(size, seed=20))
    first = s.snapshot(volume)
    early = (size // 4, 3000)
    s.write(volume, early[0], filled(early[1], seed=21))
    token = tracker.change_token(first)
    late = (size - 5000, 4000)
    s.write(volume, late[0], filled(late[1], seed=22))
    second = s.snapshot(volume)
    extents = _changed(s, second, token)
    if extents is not None:
        _require_cover(extents, [early, late], f"{second} since a token of {first}")
    _changed(s, first, token)  # well formed, whatever it reports


@check("changed-blocks")
def after_a_stream_in_an_old_token_is_refused_or_covers_everything(s: Scratch) -> None:
    """After a stream-in replaced the volume, a token from before either raises
    ChangeTrackingLost or covers every byte the stream-in wrote or changed."""
    s.need(IChangedBlocks, IStreamIn)
    tracker = s.use(IChangedBlocks)
    size = s.size(VOLUME_BYTES)
    volume = s.volume(mixed(size, seed=23))
    old = s.expected(volume)
    token = tracker.change_token(volume)
    writes = [(0, filled(size // 2, seed=24)), (size - 4096, filled(4096, seed=25))]
    s.stream_in(volume.volume_id, size, writes)
    new = s.expected(volume)
    extents = _changed(s, volume, token)
    if extents is None:
        return
    touched = [(offset, len(data)) for offset, data in writes] + _differing_runs(old, new)
    _require_cover(extents, touched, f"{volume} replaced by stream-in since a token")


@check("changed-blocks")
def unknown_tokens_raise_change_tracking_lost(s: Scratch) -> None:
    """A token the driver never gave raises ChangeTrackingLost (the caller then reads
    everything); the extents for a fresh token are well formed."""
    tracker = s.use(IChangedBlocks)
    volume = s.volume(mixed(s.size(VOLUME_BYTES), seed=26))
    _changed(s, volume, tracker.change_token(volume))
    try:
        got = tracker.changed_extents(volume, "pwt-a-token-never-given")
    except ChangeTrackingLost:
        return
    except Exception as exc:
        raise CheckFailed(
            f"changed_extents with an unknown token raised {type(exc).__name__} ({exc}),"
            " not ChangeTrackingLost"
        ) from exc
    raise CheckFailed(f"changed_extents with an unknown token returned {list(got)[:8]}")


def _differing_runs(old: bytes, new: bytes) -> list[tuple[int, int]]:
    """``(offset, length)`` of the runs where `old` and `new` differ (same length)."""
    runs: list[tuple[int, int]] = []
    start = None
    for i in range(len(new)):
        if old[i] != new[i]:
            if start is None:
                start = i
        elif start is not None:
            runs.append((start, i - start))
            start = None
    if start is not None:
        runs.append((start, len(new) - start))
    return runs


class ChangedBlocksTests:
    """The changed-blocks checks; each skips itself when the driver lacks it."""

    def test_changed_extents_cover_every_write(self, pieceworks_scratch: Scratch) -> None:
        changed_extents_cover_every_write(pieceworks_scratch)

    def test_a_token_taken_on_a_snapshot_describes_the_snapshot(
        self, pieceworks_scratch: Scratch
    ) -> None:
        a_token_taken_on_a_snapshot_describes_the_snapshot(pieceworks_scratch)

    def test_after_a_stream_in_an_old_token_is_refused_or_covers_everything(
        self, pieceworks_scratch: Scratch
    ) -> None:
        after_a_stream_in_an_old_token_is_refused_or_covers_everything(pieceworks_scratch)

    def test_unknown_tokens_raise_change_tracking_lost(self, pieceworks_scratch: Scratch) -> None:
        unknown_tokens_raise_change_tracking_lost(pieceworks_scratch)
