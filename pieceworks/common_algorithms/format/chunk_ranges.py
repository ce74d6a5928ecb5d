"""Chunk index ranges: which chunks of a volume a set of extents touches.

A `Ranges` value is a sorted list of disjoint, non-adjacent ``[first, stop)``
ranges of chunk indices (chunk ``i`` covers bytes ``[i * chunk_size,
(i + 1) * chunk_size)``, the last one possibly shorter). The chunk pipeline
plans its reads with them and the sampling guard draws its sample from them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from pieceworks.protocols import Extent

__all__ = ["Ranges", "coalesce", "contains", "index_ranges", "intersect", "subtract"]

#: Sorted, merged ``[first, stop)`` ranges of chunk indices.
Ranges = list[tuple[int, int]]


def index_ranges(extents: Iterable[Extent], size: int, chunk_size: int) -> Ranges:
    """The chunk indices `extents` touch (bytes past `size` ignored), as `Ranges`."""
    ranges: Ranges = []
    for e in sorted(extents):
        end = min(e.end, size)
        if end <= e.offset:
            continue
        first, stop = e.offset // chunk_size, (end - 1) // chunk_size + 1
        if ranges and first <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], stop))
        else:
            ranges.append((first, stop))
    return ranges


def coalesce(extents: Iterable[Extent], size: int, chunk_size: int) -> list[Extent]:
    """`extents` widened to whole chunks and merged: one `Extent` per run of chunks touched.

    The same chunks as `extents` for everything that reads them by chunk
    (`index_ranges`), in as few objects as there are runs: a sparse volume's
    driver may list an extent per chunk (about 120 bytes each, 30 MiB for
    the 262,144 chunks of 1 TiB in 4 MiB chunks), held for a whole backup.
    """
    return [
        Extent(first * chunk_size, min(stop * chunk_size, size) - first * chunk_size)
        for first, stop in index_ranges(extents, size, chunk_size)
    ]


def intersect(a: Ranges, b: Ranges) -> Ranges:
    """The indices in both `a` and `b`."""
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Ranges, b: Ranges) -> Ranges:
    """The indices of `a` not in `b`."""
    out: Ranges = []
    j = 0
    for lo, hi in a:
        start = lo
        while j < len(b) and b[j][1] <= start:
            j += 1
        k = j
        while k < len(b) and b[k][0] < hi:
            if b[k][0] > start:
                out.append((start, b[k][0]))
            start = max(start, b[k][1])
            k += 1
        if start < hi:
            out.append((start, hi))
    return out


def contains(ranges: Ranges, index: int) -> bool:
    """Whether `index` is in `ranges`."""
    k = bisect.bisect_right(ranges, index, key=lambda r: r[0]) - 1
    return k >= 0 and ranges[k][0] <= index < ranges[k][1]
