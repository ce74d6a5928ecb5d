"""Compare a backup with the volume it was taken of, chunk by chunk: ``verify --against-source``.

A backup can verify OK (every chunk matches its hash) and still be wrong
when a driver lied while it was made: extents that left data out, changed
blocks that missed a write. The only check that catches that is the source
itself. `compare_with_source` reads the volume through stream-out (from a
temporary snapshot when the backend has snapshot, which it always deletes),
hashes each chunk of the backup's grid and compares it with the manifest:
a chunk whose sha256 differs, a hole in the backup where the source holds
data, or a different size, each named with its volume offset. It is only
meaningful while the volume has not changed since the backup (right after
it, or for a volume not in use).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.protocols import (
    InvalidDriver,
    ISnapshot,
    IStreamOut,
    SnapshotRef,
    Source,
    VolumeRef,
)
from pieceworks.protocols.chunks import digest_of, is_zero

__all__ = ["SourceComparison", "SourceDifference", "compare_with_source"]


@dataclass(frozen=True)
class SourceDifference:
    """One range where the backup and the source differ: offset and length in bytes."""

    offset: int
    length: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "length": self.length, "reason": self.reason}


@dataclass(frozen=True)
class SourceComparison:
    """What `compare_with_source` found; `differences` empty means identical."""

    backup_id: str
    volume_id: str
    backend: str
    size: int
    source_size: int
    chunks_compared: int
    bytes_compared: int
    snapshot: bool
    differences: tuple[SourceDifference, ...]

    @property
    def ok(self) -> bool:
        """Whether the source holds exactly what the backup holds."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``verify --against-source --json``)."""
        return {
            "backup_id": self.backup_id,
            "volume_id": self.volume_id,
            "backend": self.backend,
            "size": self.size,
            "source_size": self.source_size,
            "chunks_compared": self.chunks_compared,
            "bytes_compared": self.bytes_compared,
            "read_from_snapshot": self.snapshot,
            "ok": self.ok,
            "differences": [d.to_dict() for d in self.differences],
        }


@contextmanager
def _source(backend: Backend, volume: VolumeRef) -> Iterator[Source]:
    """A temporary snapshot of `volume` when the backend has snapshot, else the volume."""
    if not backend.provides(ISnapshot):
        yield volume
        return
    snapshots = backend.use(ISnapshot)
    snapshot = snapshots.create_snapshot(volume, f"pw-verify-{secrets.token_hex(6)}")
    try:
        yield snapshot
    finally:
        snapshots.delete_snapshot(snapshot)


def compare_with_source(backend: Backend, store: Store, backup_id: str) -> SourceComparison:
    """Compare backup `backup_id` with its volume on `backend`, chunk by chunk.

    Raise `BackupNotFound` for an unknown backup, `VolumeNotFound` if the
    volume is gone, `InvalidDriver` if the backend cannot be read
    (no stream-out).
    """
    if not backend.provides(IStreamOut):
        raise InvalidDriver(
            f"backend '{backend.name}' has no stream-out: the source cannot be read to compare"
        )
    manifest = read_manifest(store.objects, backup_id)
    chunks = manifest.chunk_map()
    step = manifest.chunk_size
    differences: list[SourceDifference] = []
    compared = bytes_compared = 0
    volume = VolumeRef(manifest.volume_id)
    with (
        _source(backend, volume) as source,
        closing(backend.use(IStreamOut).open_read(source)) as reader,
    ):
        source_size = reader.size
        if source_size != manifest.size:
            differences.append(
                SourceDifference(
                    min(source_size, manifest.size),
                    abs(source_size - manifest.size),
                    f"the source is {source_size} bytes, the backup {manifest.size}",
                )
            )
        size = min(source_size, manifest.size)
        buffer = bytearray(step)
        for offset in range(0, size, step):
            ref = chunks.get(offset)
            length = min(ref.length if ref else step, size - offset)
            view = memoryview(buffer)[:length]
            got = reader.readinto_at(offset, view)
            if got != length:
                differences.append(
                    SourceDifference(offset, length, f"the source read {got} bytes short")
                )
                break
            compared += 1
            bytes_compared += length
            if ref is None:
                if not is_zero(view):
                    differences.append(
                        SourceDifference(offset, length, "a hole in the backup, data in the source")
                    )
            elif ref.length != length or digest_of(view) != ref.digest:
                differences.append(
                    SourceDifference(offset, length, "the chunk differs from the source")
                )
    return SourceComparison(
        backup_id=manifest.backup_id,
        volume_id=manifest.volume_id,
        backend=backend.name,
        size=manifest.size,
        source_size=source_size,
        chunks_compared=compared,
        bytes_compared=bytes_compared,
        snapshot=isinstance(source, SnapshotRef),
        differences=tuple(differences),
    )
