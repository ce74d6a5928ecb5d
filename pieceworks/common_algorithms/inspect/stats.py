"""Space figures of a store, from its manifests alone (no chunk object is read).

For a set of backups (one volume's, or the whole store's):

* ``bytes_logical``: the sum of their volume sizes (what restoring every
  one of them would write, holes included);
* ``bytes_data``: the same without holes (the plain bytes in chunks);
* ``chunks_unique`` / ``bytes_unique``: the distinct chunks they reference
  and their plain size (each chunk counted once, however many backups or
  offsets use it);
* ``bytes_stored``: the stored (compressed) size of those distinct chunks;
* ``dedup_ratio`` = bytes_data / bytes_unique, ``compression_ratio`` =
  bytes_unique / bytes_stored, ``total_ratio`` = bytes_logical /
  bytes_stored (each 1.0 when its divisor is 0).

A chunk shared by two volumes counts in each volume's figures and once in
the store's, so the volumes' ``bytes_stored`` may add up to more than the
store's. A volume is one of a backend: ``db`` of two backends is two volumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pieceworks.common_algorithms.format.manifest import Manifest

__all__ = ["StoreStats", "VolumeStats", "store_stats"]


def _ratio(a: int, b: int) -> float:
    return round(a / b, 3) if b else 1.0


@dataclass(frozen=True)
class VolumeStats:
    """The figures of one set of backups (see the module docstring); times are Unix."""

    backups: int
    bytes_logical: int
    bytes_data: int
    chunks_referenced: int
    chunks_unique: int
    bytes_unique: int
    bytes_stored: int
    first_created: float | None
    last_created: float | None

    @property
    def dedup_ratio(self) -> float:
        return _ratio(self.bytes_data, self.bytes_unique)

    @property
    def compression_ratio(self) -> float:
        return _ratio(self.bytes_unique, self.bytes_stored)

    @property
    def total_ratio(self) -> float:
        return _ratio(self.bytes_logical, self.bytes_stored)

    def to_dict(self) -> dict[str, Any]:
        """One volume's or the store's figures (``stats --json``); ``backups_total``: backups."""
        return {
            "backups_total": self.backups,
            "bytes_logical": self.bytes_logical,
            "bytes_data": self.bytes_data,
            "chunks_referenced": self.chunks_referenced,
            "chunks_unique": self.chunks_unique,
            "bytes_unique": self.bytes_unique,
            "bytes_stored": self.bytes_stored,
            "dedup_ratio": self.dedup_ratio,
            "compression_ratio": self.compression_ratio,
            "total_ratio": self.total_ratio,
            "first_created": self.first_created,
            "last_created": self.last_created,
        }


@dataclass(frozen=True)
class StoreStats:
    """Figures per volume (by backend and volume id) and for all the backups together.

    `volumes` is in volume id order, then backend.
    """

    volumes: dict[tuple[str, str], VolumeStats]
    total: VolumeStats

    def to_dict(self) -> dict[str, Any]:
        return {
            "volumes": [
                {"volume_id": v, "backend": b, **s.to_dict()} for (b, v), s in self.volumes.items()
            ],
            "total": self.total.to_dict(),
        }


def _figures(manifests: list[Manifest]) -> VolumeStats:
    unique: dict[str, tuple[int, int]] = {}
    referenced = 0
    for m in manifests:
        for c in m.chunks:
            referenced += 1
            unique.setdefault(c.digest, (c.length, c.stored_length))
    created = [m.created for m in manifests]
    return VolumeStats(
        backups=len(manifests),
        bytes_logical=sum(m.size for m in manifests),
        bytes_data=sum(m.data_bytes for m in manifests),
        chunks_referenced=referenced,
        chunks_unique=len(unique),
        bytes_unique=sum(n for n, _ in unique.values()),
        bytes_stored=sum(s for _, s in unique.values()),
        first_created=min(created, default=None),
        last_created=max(created, default=None),
    )


def store_stats(manifests: Iterable[Manifest]) -> StoreStats:
    """The figures of `manifests`, per volume and in total (pure: reads nothing)."""
    items = list(manifests)
    by_volume: dict[tuple[str, str], list[Manifest]] = {}
    for m in items:
        by_volume.setdefault((m.backend, m.volume_id), []).append(m)
    ordered = sorted(by_volume.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    return StoreStats({k: _figures(ms) for k, ms in ordered}, _figures(items))
