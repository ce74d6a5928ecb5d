"""Read-only looks at a store: statistics, a consistency check, and differences.

Each helper reads manifests (and, for `check_store`, chunk objects) and
never changes the store:

* `store_stats` (``pieceworks stats``): backups, logical, unique and stored
  bytes, deduplication and compression ratios, per volume and for the store;
* `check_store` (``pieceworks check``): every manifest readable, every
  referenced chunk present with its recorded size, and optionally a share
  of the chunks read and hashed;
* `diff_manifests` (``pieceworks diff``): the byte ranges in which two
  backups of a volume differ, from their chunk lists alone.
"""

from pieceworks.common_algorithms.inspect.check import (
    CheckReport,
    Subset,
    check_store,
    parse_subset,
)
from pieceworks.common_algorithms.inspect.diff import DiffRange, DiffReport, diff_manifests
from pieceworks.common_algorithms.inspect.stats import StoreStats, VolumeStats, store_stats

__all__ = [
    "CheckReport",
    "DiffRange",
    "DiffReport",
    "StoreStats",
    "Subset",
    "VolumeStats",
    "check_store",
    "diff_manifests",
    "parse_subset",
    "store_stats",
]
