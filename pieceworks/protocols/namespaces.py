"""The entry-point groups that name drivers and stores: the one definition of each.

A package makes a driver available under `DRIVERS_NAMESPACE` and a store
driver under `STORES_NAMESPACE` (``[project.entry-points."pieceworks.stores"]``
in its pyproject.toml); the registry (stevedore) and the drivers' own store
opener (`pieceworks.drivers.store_opener`) look them up there.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DRIVERS_NAMESPACE", "STORES_NAMESPACE"]

DRIVERS_NAMESPACE: Final = "pieceworks.drivers"
STORES_NAMESPACE: Final = "pieceworks.stores"
