"""The byte ranges in which two backups of a volume differ, from their manifests alone.

Each manifest says, for every byte of its volume, which chunk holds it (at
which position inside the chunk) or that it is a hole (zeros). Two bytes
are the same when both are holes, or both sit at the same position of
chunks with the same sha256. Everything else is reported as different:

* with the same chunk size (the usual case: incrementals keep it) the
  result is exact to the chunk: a chunk never stored as a hole is never all
  zeros, and two chunks with different digests differ somewhere;
* with different chunk sizes, ranges are reported whenever the chunks do
  not line up, so they may also cover bytes that are equal (``exact`` is
  then False);
* bytes past the end of the smaller volume are ``added`` (the second
  backup is larger) or ``removed`` (it is smaller).

No chunk data is read: the diff of two 1 TiB backups costs two manifests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pieceworks.common_algorithms.format.manifest import Manifest
from pieceworks.common_algorithms.json_fields import with_deprecated
from pieceworks.protocols import ChunkRef

__all__ = ["DiffRange", "DiffReport", "diff_manifests"]

RangeKind = Literal["changed", "added", "removed"]


@dataclass(frozen=True)
class DiffRange:
    """``length`` bytes from ``offset`` that differ, and how (`changed`, `added`, `removed`)."""

    offset: int
    length: int
    kind: RangeKind

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "length": self.length, "kind": self.kind}


@dataclass(frozen=True)
class DiffReport:
    """The ranges in which backup `b` differs from backup `a`, in offset order."""

    a: str
    b: str
    volume_id: str
    size_a: int
    size_b: int
    exact: bool
    ranges: tuple[DiffRange, ...]
    #: ID2's volume and both backends (``diff --all-volumes`` compares two volumes):
    #: ``volume_id`` alone named ID1's volume, whichever the other was.
    volume_b_id: str = ""
    backend_a: str = ""
    backend_b: str = ""

    @property
    def bytes_differing(self) -> int:
        return sum(r.length for r in self.ranges)

    @property
    def identical(self) -> bool:
        return not self.ranges

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``pieceworks diff`` (ID1 is ``backup_a_id``, ID2 ``b``).

        ``volume_id`` is ID1's volume, ``volume_b_id`` ID2's (the same one
        unless ``--all-volumes``), ``backend_a`` and ``backend_b`` their backends.

        ``backup_id_a`` and ``backup_id_b`` are the deprecated old names of
        ``backup_a_id`` and ``backup_b_id`` (`pieceworks.common_algorithms.json_fields`).
        """
        doc = {
            "backup_a_id": self.a,
            "backup_b_id": self.b,
            "volume_id": self.volume_id,
            "volume_b_id": self.volume_b_id or self.volume_id,
            "backend_a": self.backend_a,
            "backend_b": self.backend_b or self.backend_a,
            "size_a": self.size_a,
            "size_b": self.size_b,
            "exact": self.exact,
            "identical": self.identical,
            "bytes_differing": self.bytes_differing,
            "ranges": [r.to_dict() for r in self.ranges],
        }
        return with_deprecated("diff", doc)


def _boundaries(chunks: Sequence[ChunkRef]) -> Iterator[int]:
    for c in chunks:
        yield c.offset
        yield c.offset + c.length


class _Cursor:
    """What covers increasing positions of one manifest: a chunk or a hole."""

    def __init__(self, manifest: Manifest) -> None:
        self.chunks, self.size, self.i = manifest.chunks, manifest.size, 0

    def at(self, pos: int) -> tuple[str, int] | None:
        """(digest, position inside the chunk) at `pos`, or None for a hole."""
        while (
            self.i < len(self.chunks)
            and self.chunks[self.i].offset + self.chunks[self.i].length <= pos
        ):
            self.i += 1
        if self.i < len(self.chunks) and self.chunks[self.i].offset <= pos:
            c = self.chunks[self.i]
            return c.digest, pos - c.offset
        return None


def diff_manifests(a: Manifest, b: Manifest) -> DiffReport:
    """Where `b` differs from `a` (see the module docstring); pure, reads nothing.

    Backups of different volumes are compared too (their ``volume_id`` is
    reported as ``a``'s); callers that want only one volume check it first.
    """
    points = sorted({0, a.size, b.size, *_boundaries(a.chunks), *_boundaries(b.chunks)})
    ca, cb = _Cursor(a), _Cursor(b)
    ranges: list[DiffRange] = []
    for start, end in itertools.pairwise(points):
        if start >= a.size and start >= b.size:
            break
        kind: RangeKind | None
        if start >= a.size:
            kind = "added"
        elif start >= b.size:
            kind = "removed"
        else:
            kind = None if ca.at(start) == cb.at(start) else "changed"
        if kind is None:
            continue
        last = ranges[-1] if ranges else None
        if last is not None and last.kind == kind and last.offset + last.length == start:
            ranges[-1] = DiffRange(last.offset, end - last.offset, kind)
        else:
            ranges.append(DiffRange(start, end - start, kind))
    return DiffReport(
        a.backup_id,
        b.backup_id,
        a.volume_id,
        a.size,
        b.size,
        a.chunk_size == b.chunk_size,
        tuple(ranges),
        volume_b_id=b.volume_id,
        backend_a=a.backend,
        backend_b=b.backend,
    )
