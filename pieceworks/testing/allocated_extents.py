"""Conformance checks of allocated-extents (`IAllocatedExtents`): `AllocatedExtentsTests`."""

from __future__ import annotations

from pieceworks.protocols import (
    IAllocatedExtents,
    ISnapshot,
    SnapshotNotFound,
    SnapshotRef,
    Source,
    VolumeNotFound,
    VolumeRef,
)
from pieceworks.testing._util import expect_error, filled, mixed
from pieceworks.testing.scratch import (
    VOLUME_BYTES,
    CheckFailed,
    Scratch,
    check,
    nonzero_runs,
    uncovered,
    well_formed,
)

__all__ = [
    "AllocatedExtentsTests",
    "extents_cover_every_data_byte",
    "extents_of_a_snapshot_cover_its_data",
    "extents_of_unknown_sources_raise_not_found",
]


def _layouts(size: int) -> dict[str, list[tuple[int, int]]]:
    """Where data lies, by name: ``(offset, length)`` runs inside a `size`-byte volume."""
    return {
        "data at the start": [(0, 5000)],
        "data in the middle": [(size // 2 - 3001, 7003)],
        "data at the end": [(size - 4096, 4096)],
        "an unaligned tail": [(size - 301, 301)],
        "scattered single bytes": [(1, 1), (size // 3, 1), (size - 1, 1)],
        "no data": [],
    }


def _check_source(s: Scratch, source: Source, what: str) -> None:
    extents = list(s.use(IAllocatedExtents).allocated_extents(source))
    want = s.expected(source)
    well_formed(extents, len(want), f"allocated-extents of {what}")
    gaps = uncovered(nonzero_runs(want), extents)
    if gaps:
        where = ", ".join(f"{o}..{o + n}" for o, n in gaps[:8])
        raise CheckFailed(
            f"allocated-extents of {what}: data outside every extent at {where}"
            f" (extents: {extents[:8]}): a backup would lose these bytes"
        )


@check("allocated-extents")
def extents_cover_every_data_byte(s: Scratch) -> None:
    """Extents are sorted, disjoint, within the size and cover every non-zero byte,
    for data at the start, middle, end, in an unaligned tail, scattered, or none."""
    s.need(IAllocatedExtents)
    size = s.size(VOLUME_BYTES + 700)
    for seed, (name, runs) in enumerate(_layouts(size).items()):
        data = bytearray(size)
        for offset, length in runs:
            data[offset : offset + length] = filled(length, seed * 100 + offset)
        _check_source(s, s.volume(bytes(data)), f"a volume with {name}")


@check("allocated-extents")
def extents_of_a_snapshot_cover_its_data(s: Scratch) -> None:
    """A snapshot's extents cover its own data, not the volume's later content."""
    s.need(IAllocatedExtents, ISnapshot)
    volume = s.volume(mixed(s.size(VOLUME_BYTES), seed=4))
    snapshot = s.snapshot(volume)
    _check_source(s, snapshot, str(snapshot))
    _check_source(s, volume, str(volume))


@check("allocated-extents")
def extents_of_unknown_sources_raise_not_found(s: Scratch) -> None:
    """An unknown volume raises VolumeNotFound, an unknown snapshot SnapshotNotFound."""
    driver = s.use(IAllocatedExtents)
    missing = VolumeRef(s.new_id("missing"))
    expect_error(
        VolumeNotFound, lambda: driver.allocated_extents(missing), f"allocated_extents({missing})"
    )
    if s.provides(ISnapshot):
        volume = s.volume(filled(s.size(512), seed=5))
        ghost = SnapshotRef(volume.volume_id, "pwt-no-such-snapshot")
        expect_error(
            SnapshotNotFound,
            lambda: driver.allocated_extents(ghost),
            f"allocated_extents({ghost})",
        )


class AllocatedExtentsTests:
    """The allocated-extents checks; each skips itself when the driver lacks it."""

    def test_extents_cover_every_data_byte(self, pieceworks_scratch: Scratch) -> None:
        extents_cover_every_data_byte(pieceworks_scratch)

    def test_extents_of_a_snapshot_cover_its_data(self, pieceworks_scratch: Scratch) -> None:
        extents_of_a_snapshot_cover_its_data(pieceworks_scratch)

    def test_extents_of_unknown_sources_raise_not_found(self, pieceworks_scratch: Scratch) -> None:
        extents_of_unknown_sources_raise_not_found(pieceworks_scratch)
