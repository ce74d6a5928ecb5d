"""The suite as a pytest plugin: how it loads, what it says when misused, what it reports."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pieceworks.testing import CHECKS, ConformanceTests

REPO = Path(__file__).resolve().parents[2]

HARNESS = """
import pytest
from pieceworks.testing import StreamOutTests, ChangedBlocksTests
from tests.support.harnesses import FileHarness


class TestFiles(StreamOutTests, ChangedBlocksTests):
    @pytest.fixture
    def pieceworks_harness(self, tmp_path):
        return FileHarness(tmp_path / "volumes")
"""


def test_every_check_runs_in_conformance_tests() -> None:
    """Each registered check has its own test method in `ConformanceTests` (no two
    mixins hide each other's test by using the same name)."""
    names = {f"test_{c.name}" for c in CHECKS}
    assert len(names) == len(CHECKS)
    assert names == {n for n in dir(ConformanceTests) if n.startswith("test_")}


def test_the_plugin_is_a_pytest11_entry_point() -> None:
    """Installing pieceworks makes the plugin load in every pytest run."""
    found = entry_points(group="pytest11", name="pieceworks.testing.plugin")
    assert [ep.value for ep in found] == ["pieceworks.testing.plugin"]


def test_a_missing_harness_fixture_is_named(pytester: pytest.Pytester) -> None:
    """Collecting the suite without a ``pieceworks_harness`` fixture fails with what to define."""
    pytester.makepyfile(
        test_none="from pieceworks.testing import StreamOutTests\n"
        "class TestNone(StreamOutTests):\n    pass\n"
    )
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*define a fixture named 'pieceworks_harness'*"])


def test_a_harness_that_is_no_idriverharness_is_refused(pytester: pytest.Pytester) -> None:
    """A harness object without the interface fails each check, naming IDriverHarness."""
    pytester.makepyfile(
        test_bad="import pytest\nfrom pieceworks.testing import StreamOutTests\n"
        "class TestBad(StreamOutTests):\n"
        "    @pytest.fixture\n    def pieceworks_harness(self):\n        return object()\n"
    )
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*pieceworks_harness does not provide IDriverHarness*"])


def test_checks_of_missing_capabilities_are_skipped_and_summarised(
    pytester: pytest.Pytester,
) -> None:
    """The file driver has no changed-blocks: those checks skip, and the summary says why."""
    pytester.makepyfile(test_files=HARNESS)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, skipped=4)
    result.stdout.fnmatch_lines(
        ["*pieceworks conformance: not applicable*", "*4 checks: the driver lacks changed-blocks"]
    )


def test_pytest_plugins_loads_the_suite_without_autoloading(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With plugin autoloading off, ``pytest_plugins = ["pieceworks.testing"]`` in the
    root conftest loads the fixtures (a separate process, as a user's run would be)."""
    pytester.makeconftest('pytest_plugins = ["pieceworks.testing"]\n')
    pytester.makepyfile(test_files=HARNESS)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, skipped=4)
