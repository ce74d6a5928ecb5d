"""Defer the parts of TaskFlow's import that a flow run in this process never uses.

``taskflow.types.failure`` (imported by every TaskFlow module) imports
``taskflow.utils.schema_utils``, which imports jsonschema (and with it
referencing, attrs and rpds: about 70 ms, a sixth of a command's start-up),
only to validate a failure read back from persistence; ``taskflow.utils.misc``
imports oslo.utils' ``netutils`` (which imports psutil and netaddr) to split
URIs and oslo.serialization's ``msgpackutils`` (msgpack) to load binary
data, and oslo.serialization's ``jsonutils`` looks netaddr up for IP address
values: none of them at import time. Likewise ``jsonutils`` imports
``xmlrpc.client`` (with http.client, ssl and email: about 15 ms) only to
recognise its ``DateTime`` values, and futurist's debtcollector brings wrapt,
whose ``synchronization`` module imports asyncio (about 10 ms) for
coroutine functions it is given at run time: a flow uses neither. `defer` puts a finder
on ``sys.meta_path`` that gives the modules of `DEFERRED` an
`importlib.util.LazyLoader`: such a module is executed, and jsonschema
imported, the first time one of its attributes is used, and never if none
is. Nothing else changes: same module, same attributes, same errors.
`defer` imports nothing of TaskFlow itself, and does nothing for a module
already imported.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Final

__all__ = ["DEFERRED", "defer"]

#: The modules `defer` loads lazily.
DEFERRED: Final = frozenset(
    {
        "taskflow.utils.schema_utils",
        "oslo_utils.netutils",
        "oslo_serialization.msgpackutils",
        "netaddr",
        "xmlrpc.client",
        "asyncio",
    }
)


class _LazyFinder:
    """A ``sys.meta_path`` finder: the spec of the next finder, with a lazy loader."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name not in DEFERRED:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


_FINDER: Final = _LazyFinder()


def defer() -> None:
    """Load the modules of `DEFERRED` on first use from now on (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
