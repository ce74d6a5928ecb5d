"""The pytest plugin of the conformance suite: fixtures and a summary of what did not apply.

Loaded by the ``pytest11`` entry point ``pieceworks.testing.plugin`` (every
pytest run where pieceworks is installed), or by
``pytest_plugins = ["pieceworks.testing"]`` in a root ``conftest.py`` when
plugin autoloading is off. It defines:

``pieceworks_harness`` (you must override it)
    Your `IDriverHarness`. The plugin's own version fails the test with a
    message saying so.
``pieceworks_scratch``
    A `Scratch` for one check: your driver (``make_driver()``, verified),
    the scratch volumes of the check, deleted at teardown (a check that
    leaves one behind errors at teardown).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from pieceworks.testing.harness import IDriverHarness
from pieceworks.testing.scratch import NotApplicable, Scratch

__all__ = ["pieceworks_harness", "pieceworks_scratch"]

_NOT_APPLICABLE = "not applicable: "


@pytest.fixture
def pieceworks_harness() -> object:
    """Must be overridden: return your driver's `IDriverHarness`."""
    pytest.fail(
        "pieceworks conformance suite: define a fixture named 'pieceworks_harness' that"
        " returns an object providing pieceworks.testing.IDriverHarness"
        " (make_driver, create_volume, write, delete_volume)",
        pytrace=False,
    )


@pytest.fixture
def pieceworks_scratch(pieceworks_harness: object, tmp_path: Path) -> Iterator[Scratch]:
    """One check's `Scratch` on your harness; its volumes are deleted afterwards."""
    try:
        verifyObject(IDriverHarness, pieceworks_harness)
    except Invalid as exc:
        pytest.fail(f"pieceworks_harness does not provide IDriverHarness: {exc}", pytrace=False)
    scratch = Scratch(cast(IDriverHarness, pieceworks_harness), str(tmp_path))
    yield scratch
    problems = scratch.cleanup()
    if problems:
        pytest.fail("cleanup of the check's volumes failed: " + "; ".join(problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    """Report a check's `NotApplicable` as a skip located at the test, not in pytest."""
    try:
        return (yield)
    except NotApplicable as exc:
        raise pytest.skip.Exception(str(exc), _use_item_location=True) from None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per capability the driver lacks, with how many checks it skipped."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            message = str(longrepr[2]).removeprefix("Skipped: ")
            if message.startswith(_NOT_APPLICABLE):
                reasons[message.removeprefix(_NOT_APPLICABLE)] += 1
    if reasons:
        terminalreporter.section("pieceworks conformance: not applicable")
        for reason, count in sorted(reasons.items()):
            terminalreporter.write_line(f"{count:3d} checks: {reason}")
