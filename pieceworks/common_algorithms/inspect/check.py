"""Check a whole store: manifests readable, chunks present with their size, and read a share.

Without a subset the check reads no chunk data: it lists the chunk objects
once, and asks the store for the size of each one a manifest references
(one ``head`` per distinct chunk). With a `Subset` it also fetches that
share of the distinct chunks and checks each against its sha256 and length
(`decode_chunk`). A subset ``N/M`` is restic's ``--read-data-subset N/M``:
the chunks whose digest's first byte is ``N - 1`` modulo M, so running 1/M
to M/M (say one a night) reads every chunk exactly once. ``P%`` reads a
random P percent of them.

Every problem is reported (never only the first), each naming the object
and the backups that reference it; objects no manifest references are
counted (``pieceworks prune`` removes them) but are not problems.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from pieceworks.common_algorithms.format.manifest import Manifest, list_backup_ids, read_manifest
from pieceworks.common_algorithms.gc.collection import chunk_id_of
from pieceworks.common_algorithms.gc.leases import read_lease
from pieceworks.protocols import (
    BackupNotFound,
    CorruptionError,
    IObjectStore,
    ObjectNotFound,
    PieceworksError,
)
from pieceworks.protocols.chunks import chunk_key, decode_chunk
from pieceworks.protocols.encrypted_store import chunk_id_for

__all__ = ["CheckProblem", "CheckReport", "Subset", "check_store", "parse_subset"]

CHUNK_PREFIX = "chunks/"

ProblemKind = Literal[
    "manifest-unreadable", "chunk-missing", "chunk-size", "chunk-corrupt", "chunk-unreadable"
]

#: ``progress(done, total)`` of the data read (plain bytes), from the calling thread.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Subset:
    """A share of the distinct chunks to read: bucket `n` of `m`, or `percent` of them."""

    n: int = 0
    m: int = 0
    percent: float = 0.0

    def describe(self) -> str:
        return f"{self.n}/{self.m}" if self.m else f"{self.percent:g}%"

    def choose(self, digests: Iterable[str], rng: random.Random | None = None) -> list[str]:
        """The digests this subset reads, sorted."""
        ordered = sorted(digests)
        if self.m:
            return [d for d in ordered if int(d[:2], 16) % self.m == self.n - 1]
        count = math.ceil(len(ordered) * self.percent / 100)
        return sorted((rng or random.Random()).sample(ordered, count))


def parse_subset(text: str) -> Subset:
    """``N/M`` (1 <= N <= M <= 256) or ``P%`` (0 < P <= 100); `ValueError` otherwise."""
    spec = text.strip()
    bucket = re.fullmatch(r"(\d+)/(\d+)", spec, re.ASCII)  # not other scripts' digits
    if bucket:
        n, m = int(bucket.group(1)), int(bucket.group(2))
        if not 1 <= n <= m <= 256:
            raise ValueError(f"invalid subset {text!r}: N/M needs 1 <= N <= M <= 256")
        return Subset(n=n, m=m)
    pct = re.fullmatch(r"(\d+(?:\.\d+)?)%", spec, re.ASCII)
    if pct:
        value = float(pct.group(1))
        if not 0 < value <= 100:
            raise ValueError(f"invalid subset {text!r}: a percentage must be > 0 and <= 100")
        return Subset(percent=value)
    raise ValueError(f"invalid subset {text!r}: use N/M (e.g. 1/7) or a percentage (e.g. 10%)")


@dataclass(frozen=True)
class CheckProblem:
    """One thing wrong: its kind, the object key, the backups concerned and details."""

    kind: ProblemKind
    key: str
    backup_ids: tuple[str, ...]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "backup_ids": list(self.backup_ids),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class CheckReport:
    """What `check_store` looked at and every problem it found (``ok`` if none)."""

    manifests: int
    manifests_unreadable: int
    chunks_referenced: int
    chunks_present: int
    chunks_read: int
    bytes_read: int
    objects_unreferenced: int
    subset: str | None
    problems: tuple[CheckProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, kind: ProblemKind) -> int:
        return sum(p.kind == kind for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "manifests": self.manifests,
            "manifests_unreadable": self.manifests_unreadable,
            "chunks_referenced": self.chunks_referenced,
            "chunks_present": self.chunks_present,
            "chunks_missing": self.count("chunk-missing"),
            "chunks_wrong_size": self.count("chunk-size"),
            "chunks_read": self.chunks_read,
            "chunks_corrupt": self.count("chunk-corrupt"),
            "chunks_unreadable": self.count("chunk-unreadable"),
            "bytes_read": self.bytes_read,
            "objects_unreferenced": self.objects_unreferenced,
            "read_data_subset": self.subset,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclass
class _Chunk:
    length: int
    offset: int  # in the first backup that references it (for messages)
    sizes: dict[int, list[str]] = field(default_factory=dict)  # stored length -> backups


def _read_manifests(store: IObjectStore) -> tuple[list[Manifest], list[CheckProblem]]:
    manifests, problems = [], []
    for backup_id in list_backup_ids(store):
        try:
            manifests.append(read_manifest(store, backup_id))
        except BackupNotFound:  # deleted while we listed
            continue
        except PieceworksError as exc:
            key = f"manifests/{backup_id}.json"
            problems.append(CheckProblem("manifest-unreadable", key, (backup_id,), str(exc)))
    return manifests, problems


def check_store(
    store: IObjectStore,
    *,
    subset: Subset | None = None,
    threads: int = 4,
    progress: Progress | None = None,
    rng: random.Random | None = None,
) -> CheckReport:
    """Check every manifest and referenced chunk of `store` (see the module docstring).

    Store failures other than a missing object (an unreachable store, say)
    are raised, not reported, except while reading the subset's chunks: a
    chunk that cannot be read (its permissions) is a ``chunk-unreadable``
    problem and the check goes on, so the summary names every one. The
    check holds a read lease on the store (`gc.read_lease`) from before it
    reads the first manifest: a backup deleted meanwhile keeps its chunks
    until the check is done, so no chunk is reported missing only because a
    collection ran.
    """
    with read_lease(store, "check"):
        return _check(store, subset, threads, progress, rng)


def _check(
    store: IObjectStore,
    subset: Subset | None,
    threads: int,
    progress: Progress | None,
    rng: random.Random | None,
) -> CheckReport:
    manifests, problems = _read_manifests(store)
    chunks: dict[str, _Chunk] = {}
    for m in manifests:
        for c in m.chunks:
            entry = chunks.setdefault(c.digest, _Chunk(c.length, c.offset))
            backups = entry.sizes.setdefault(c.stored_length, [])
            if not backups or backups[-1] != m.backup_id:
                backups.append(m.backup_id)
    listed = {i for key in store.list(CHUNK_PREFIX) if (i := chunk_id_of(key)) is not None}

    def size_of(digest: str) -> int | None:
        try:
            return store.head(chunk_key(digest)).size
        except ObjectNotFound:
            return None

    from pieceworks.common_algorithms.format.chunk_pipeline import (  # noqa: PLC0415
        QUARANTINE_PREFIX,
    )

    # A chunk `verify` found damaged was moved aside: say so where it is missing.
    quarantined = {
        key.removeprefix(QUARANTINE_PREFIX).partition(".")[0]
        for key in store.list(QUARANTINE_PREFIX)
    }
    present: list[str] = []
    referenced = sorted(chunks)
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="pieceworks-check") as pool:
        for digest, size in zip(referenced, pool.map(size_of, referenced), strict=True):
            entry = chunks[digest]
            users = tuple(b for bs in entry.sizes.values() for b in bs)
            if size is None:
                problems.append(
                    CheckProblem(
                        "chunk-missing",
                        chunk_key(digest),
                        users,
                        f"chunk {digest} (offset {entry.offset} of {users[0]}) is missing"
                        + (
                            f" (verify moved it aside, damaged, to {QUARANTINE_PREFIX}; the"
                            " next backup of the data stores it again)"
                            if digest in quarantined
                            else ""
                        ),
                    )
                )
                continue
            present.append(digest)
            for recorded, backups in sorted(entry.sizes.items()):
                if recorded != size:
                    problems.append(
                        CheckProblem(
                            "chunk-size",
                            chunk_key(digest),
                            tuple(backups),
                            f"chunk {digest} is {size} bytes in the store; the manifest"
                            f" records {recorded}",
                        )
                    )
        read = subset.choose(present, rng) if subset is not None else []
        total = sum(chunks[d].length for d in read)
        chunk_id = chunk_id_for(store)  # sha256, or the keyed id of an encrypted store

        def read_one(digest: str) -> tuple[ProblemKind, str] | None:
            entry = chunks[digest]
            try:
                stored = store.get(chunk_key(digest))
                decode_chunk(stored, digest, entry.length, entry.offset, chunk_id)
            except ObjectNotFound:
                return "chunk-corrupt", f"chunk {digest} disappeared while being read"
            except CorruptionError as exc:
                return "chunk-corrupt", str(exc)
            except PieceworksError as exc:  # this object only (permissions): go on with the rest
                return "chunk-unreadable", f"chunk {digest} cannot be read: {exc}"
            return None

        done = 0
        for digest, error in zip(read, pool.map(read_one, read), strict=True):
            done += chunks[digest].length
            if progress is not None:
                progress(done, total)
            if error is not None:
                users = tuple(b for bs in chunks[digest].sizes.values() for b in bs)
                problems.append(CheckProblem(error[0], chunk_key(digest), users, error[1]))
    return CheckReport(
        manifests=len(manifests) + sum(p.kind == "manifest-unreadable" for p in problems),
        manifests_unreadable=sum(p.kind == "manifest-unreadable" for p in problems),
        chunks_referenced=len(chunks),
        chunks_present=len(present),
        chunks_read=len(read),
        bytes_read=total,
        objects_unreferenced=len(listed - set(chunks)),
        subset=subset.describe() if subset is not None else None,
        problems=tuple(problems),
    )
