"""chunk_ranges.coalesce: a driver's extents as whole chunks, merged."""

from __future__ import annotations

from pieceworks.common_algorithms.format.chunk_ranges import coalesce, index_ranges
from pieceworks.protocols import Extent

CS = 64


def test_an_extent_per_chunk_becomes_one_run() -> None:
    """A sparse volume's driver may list a small extent in every chunk: one Extent remains."""
    extents = [Extent(i * CS + 3, 5) for i in range(1000)]
    assert coalesce(extents, 1000 * CS, CS) == [Extent(0, 1000 * CS)]


def test_the_same_chunks_as_the_extents() -> None:
    """Unsorted, overlapping, past the end, empty: the chunks touched are the same."""
    size = 20 * CS - 10  # the last chunk is short
    extents = [
        Extent(5 * CS + 1, 1),
        Extent(0, 1),
        Extent(2 * CS - 1, 2),  # touches chunks 1 and 2
        Extent(9 * CS, 0),  # empty: touches nothing
        Extent(19 * CS, 10 * CS),  # runs past the end
    ]
    merged = coalesce(extents, size, CS)
    assert merged == [Extent(0, 3 * CS), Extent(5 * CS, CS), Extent(19 * CS, CS - 10)]
    assert index_ranges(merged, size, CS) == index_ranges(extents, size, CS)
    assert coalesce([], size, CS) == []
