"""What a killed run may leave in a posix store and beside its volumes.

Every crash test checks the same invariant: after ``pieceworks recover`` and
``gc`` none of these remain.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pieceworks.common_algorithms.format.manifest import list_manifests
from pieceworks.drivers.posix_store import PosixStore


def leftovers(store: Path, places: Iterable[Path]) -> list[str]:
    """Paths of markers (leases, locks, run journals) in `store`, of temporary files,
    ``.incoming`` copies and pieceworks snapshots in `store` and every folder of
    `places`, and of chunks in `store` that no manifest references."""
    found: list[str] = []
    for sub in ("leases", "locks", "runs"):
        found += [str(p) for p in (store / sub).rglob("*") if p.is_file()]
    for top in (store, *places):
        found += [str(p) for p in top.rglob(".tmp-*")]
        found += [str(p) for p in (top / ".incoming").glob("*")]
        found += [str(p) for p in (top / ".snapshots").rglob("pw-*")]
    referenced = {d for m in list_manifests(PosixStore(store)) for d in m.digests()}
    found += [
        str(p) for p in (store / "chunks").rglob("*") if p.is_file() and p.name not in referenced
    ]
    return found
