"""The suite's own arithmetic: which written bytes no extent covers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pieceworks.protocols import Extent
from pieceworks.testing.scratch import nonzero_runs, uncovered

_RANGE = st.tuples(st.integers(0, 200), st.integers(1, 60))


@given(written=st.lists(_RANGE, max_size=6), extents=st.lists(_RANGE, max_size=6))
def test_uncovered_is_exactly_the_written_bytes_outside_every_extent(
    written: list[tuple[int, int]], extents: list[tuple[int, int]]
) -> None:
    """`uncovered` agrees with a byte map, for overlapping and unsorted input alike."""
    covered = {b for o, n in extents for b in range(o, o + n)}
    want = {b for o, n in written for b in range(o, o + n)} - covered
    gaps = uncovered(written, [Extent(o, n) for o, n in extents])
    got = [b for o, n in gaps for b in range(o, o + n)]
    assert set(got) == want


def test_nonzero_runs_finds_data_at_both_ends() -> None:
    """Runs of non-zero bytes, including one at the start and one at the very end."""
    assert nonzero_runs(b"ab\0\0c\0d") == [(0, 2), (4, 1), (6, 1)]
    assert nonzero_runs(bytes(5)) == []
