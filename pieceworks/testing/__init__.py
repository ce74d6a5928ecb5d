"""The conformance suite for pieceworks drivers (a pytest plugin), like fsspec's abstract tests.

A driver package tests itself against the contracts of `pieceworks.protocols`
with three steps:

1. write a harness (`IDriverHarness`: ``make_driver``, ``create_volume``,
   ``write``, ``delete_volume``; optional hint ``size_unit``);
2. return it from a fixture named ``pieceworks_harness``;
3. collect the suite's mixins in a test class::

       from pieceworks.testing import ConformanceTests

       class TestMyDriver(ConformanceTests):
           pass

   or only some capabilities (``class TestMine(StreamOutTests, SnapshotTests)``).

The plugin (`pieceworks.testing.plugin`) loads by itself through the
``pytest11`` entry point; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, put
``pytest_plugins = ["pieceworks.testing"]`` in your root ``conftest.py``.

Each mixin holds the checks of one capability (stream-out, allocated-extents,
snapshot, stream-in, changed-blocks, push/pull, end to end); a check whose
capability the driver lacks reports itself skipped as ``not applicable``,
and the run ends with a summary of those. The checks are plain functions
(``pieceworks.testing.stream_out.reads_are_full_except_at_the_end(scratch)``),
also run outside pytest by ``pieceworks check-driver``; the changed-blocks
property check draws its write sets with hypothesis, which is why hypothesis
is a dependency of pieceworks itself (pytest is in the ``testing`` extra).
"""

from pieceworks.testing.allocated_extents import AllocatedExtentsTests
from pieceworks.testing.changed_blocks import ChangedBlocksTests
from pieceworks.testing.end_to_end import EndToEndTests
from pieceworks.testing.harness import IDriverHarness
from pieceworks.testing.offload import OffloadTests
from pieceworks.testing.scratch import CHECKS, Check, CheckFailed, NotApplicable, Scratch
from pieceworks.testing.snapshot import SnapshotTests
from pieceworks.testing.stream_in import StreamInTests
from pieceworks.testing.stream_out import StreamOutTests

__all__ = [
    "CHECKS",
    "AllocatedExtentsTests",
    "ChangedBlocksTests",
    "Check",
    "CheckFailed",
    "ConformanceTests",
    "EndToEndTests",
    "IDriverHarness",
    "NotApplicable",
    "OffloadTests",
    "Scratch",
    "SnapshotTests",
    "StreamInTests",
    "StreamOutTests",
]

#: Loads the plugin when this package is named in ``pytest_plugins``.
pytest_plugins = ["pieceworks.testing.plugin"]


class ConformanceTests(
    StreamOutTests,
    AllocatedExtentsTests,
    SnapshotTests,
    StreamInTests,
    ChangedBlocksTests,
    OffloadTests,
    EndToEndTests,
):
    """Every check of the suite; those of capabilities the driver lacks skip themselves."""
