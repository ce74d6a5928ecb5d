"""The conformance suite catches drivers that lie: each liar fails the check of its lie.

Each test runs the whole suite (`ConformanceTests`) against one deliberately
lying driver (`tests/support/liars.py`) in a pytester session and asserts
that the run fails, and at the check that names the lie.
"""

from __future__ import annotations

import pytest

from pieceworks.testing import changed_blocks

LIARS = [
    ("OmitsLastExtent", "test_extents_cover_every_data_byte", "data outside every extent"),
    (
        "OmitsLastChangedBlock",
        "test_changed_extents_cover_every_write",
        "are in no changed extent",
    ),
    (
        "MutableSnapshot",
        "test_snapshot_keeps_its_content_when_the_volume_is_written",
        "after writes to the volume: bytes differ",
    ),
    (
        "StreamInKeepsTracking",
        "test_after_a_stream_in_an_old_token_is_refused_or_covers_everything",
        "replaced by stream-in since a token",
    ),
]

#: Liars whose lie is an enhancer's answer: the end-to-end check fails with the guard's words.
ENHANCER_LIARS = {
    "OmitsLastExtent": "allocated-extents of backend 'pwt-under-test'",
    "OmitsLastChangedBlock": "changed-blocks of backend 'pwt-under-test'",
}

SUITE = """
import pytest

from pieceworks.testing import ConformanceTests
from tests.support.harnesses import TrackingHarness
from tests.support import liars


class TestLiar(ConformanceTests):
    @pytest.fixture
    def pieceworks_harness(self, tmp_path):
        return TrackingHarness(tmp_path / "volumes", liars.{liar})
"""


@pytest.mark.parametrize(("liar", "check", "message"), LIARS, ids=[x[0] for x in LIARS])
def test_the_suite_fails_a_lying_driver_at_the_check_of_its_lie(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    liar: str,
    check: str,
    message: str,
) -> None:
    """The suite run against the liar fails, and the failing check names the lie."""
    monkeypatch.setattr(changed_blocks, "EXAMPLES", 10)
    pytester.makepyfile(test_liar=SUITE.format(liar=liar))
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED test_liar.py::TestLiar::{check}*"])
    assert message in result.stdout.str()
    if liar in ENHANCER_LIARS:  # the backup's own guard, at 100% in the suite, names it too
        result.stdout.fnmatch_lines(
            ["FAILED test_liar.py::TestLiar::test_full_backup_writes_incremental_restore*"]
        )
        assert ENHANCER_LIARS[liar] in result.stdout.str()
