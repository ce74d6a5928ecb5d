"""The sampling guard: catch a driver whose changed-blocks or allocated-extents lie.

An incremental backup through changed-blocks does not read the chunks the
driver reports unchanged (it takes the parent's chunk, or a hole, at each of
them), and any backup through allocated-extents does not read the ranges the
driver reports as holes. A driver that omits a written block or a data
extent therefore makes a backup that verifies OK and restores wrong. The
guard reads a small random sample of those skipped chunks as part of the
backup's own pass, and checks each afterwards:

* a chunk reported unchanged must hash to the parent's chunk at that offset
  (or be all zeros where the parent had a hole);
* a chunk reported as a hole (it meets no allocated extent) must read as
  zeros.

`plan_guard` draws the sample and widens the extents and changed ranges
the backup is given so that the sampled chunks are read (they are hashed
like any other chunk and, being unchanged, deduplicated: no store write);
`GuardPlan.check` compares the chunks the backup produced with what the
driver promised. A mismatch is a `Lie`: the caller discards the pass and
reads the whole volume (no enhancer), so that no lie reaches a manifest.

Cost: ``min(max_chunks, max(1, ceil(percent% of n)))`` chunks of each
kind (``n`` the chunks skipped for that enhancer), read and hashed;
`GuardReport` gives the bytes re-read and whether the cap lowered the
sample. ``percent == 0`` turns the guard off.

The cap, `DEFAULT_GUARD_MAX_CHUNKS` = 128 chunks per enhancer per backup
(``[backup] guard_max_chunks``, ``backup --guard-max-chunks``). Without it
the cost grows with the volume: at 1% a 1 TiB thin volume that is mostly
holes re-reads ~10 GiB of zeros on every backup. What catches a lie is the
number of chunks sampled, not their share: if the driver lies about ``k``
of the ``n`` chunks it let the backup skip, ``m`` chunks drawn at random
without replacement miss all of them with probability
``C(n-k, m) / C(n, m) <= (1 - k/n) ** m``. With ``m = 128``:

* a lie about 2.4% or more of the skipped chunks is caught by one backup
  with probability >= 95% (``1 - 0.976 ** 128 = 0.955``), 5% or more with
  >= 99.8%;
* a lie about 1% is caught with >= 72% per backup; a driver's lie is a bug
  that every backup repeats, so three backups catch it with >= 97.9%;
* a lie about one chunk in ``n`` is caught with probability ``m / n`` per
  backup: the guard is a net for systematic lies, not a proof (that is
  ``verify --against-source``).

Below ``n = 100 * 128`` skipped chunks (50 GiB at the default 4 MiB
chunk) the cap does not bind at the default 1%; above it the cost stays at
128 chunks, 512 MiB at 4 MiB chunks, per enhancer, whatever the volume's
size (a 1 TiB thin volume: 512 MiB instead of ~10 GiB).
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pieceworks.common_algorithms.format.chunk_ranges import (
    Ranges,
    index_ranges,
    intersect,
    subtract,
)
from pieceworks.protocols import ChunkRef, Extent
from pieceworks.protocols.chunk_list import ChunkList

__all__ = [
    "CHANGED_BLOCKS",
    "ALLOCATED_EXTENTS",
    "DEFAULT_GUARD_MAX_CHUNKS",
    "DEFAULT_GUARD_PERCENT",
    "GuardPlan",
    "GuardReport",
    "Lie",
    "check_max_chunks",
    "check_percent",
    "chunk_bytes",
    "driver_name",
    "unguarded",
    "enhancer_savings",
    "guard_stats",
    "plan_guard",
]

log = logging.getLogger(__name__)

#: The share of skipped chunks a backup re-reads by default, in percent.
DEFAULT_GUARD_PERCENT: Final = 1.0
#: At most this many chunks of each kind are sampled per backup (see the module).
DEFAULT_GUARD_MAX_CHUNKS: Final = 128
CHANGED_BLOCKS: Final = "changed-blocks"
ALLOCATED_EXTENTS: Final = "allocated-extents"
Enhancer = Literal["changed-blocks", "allocated-extents"]
#: At most this many offsets of a lie are named (the count is always given).
_NAMED_OFFSETS = 20


def check_percent(percent: float) -> float:
    """`percent` as a float in [0, 100]; `ValueError` naming it otherwise."""
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise ValueError(f"guard sample must be a percentage, not {percent!r}")
    value = float(percent)
    if not 0.0 <= value <= 100.0 or math.isnan(value):
        raise ValueError(f"guard sample {percent!r} out of range: use 0 (off) to 100 percent")
    return value


def check_max_chunks(max_chunks: int) -> int:
    """`max_chunks` if it is an int of at least 1; `ValueError` naming it otherwise."""
    if isinstance(max_chunks, bool) or not isinstance(max_chunks, int) or max_chunks < 1:
        raise ValueError(
            f"guard max chunks must be a whole number of at least 1, not {max_chunks!r}"
        )
    return max_chunks


@dataclass(frozen=True, slots=True)
class Lie:
    """An enhancer's answer the data contradicts.

    `enhancer` is ``changed-blocks`` (chunks reported unchanged that
    changed) or ``allocated-extents`` (chunks reported as holes that hold
    data); `offsets` are the byte offsets of those chunks, ascending;
    `backend` and `driver` (``module.Class``) name who said it.
    """

    enhancer: Enhancer
    backend: str
    driver: str
    offsets: tuple[int, ...]

    def message(self) -> str:
        """One line for the log and the report: who lied, about what, where."""
        shown = ", ".join(str(o) for o in self.offsets[:_NAMED_OFFSETS])
        extra = len(self.offsets) - _NAMED_OFFSETS
        more = f" and {extra} more" if extra > 0 else ""
        what = (
            "reported unchanged but changed"
            if self.enhancer == CHANGED_BLOCKS
            else "reported as holes but hold data"
        )
        return (
            f"{self.enhancer} of backend '{self.backend}' (driver {self.driver}) lied: chunks at"
            f" byte offsets {shown}{more} were {what}; backed up by a full read instead"
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"enhancer", "backend", "driver", "offsets": [int, ...]}``."""
        return {
            "enhancer": self.enhancer,
            "backend": self.backend,
            "driver": self.driver,
            "offsets": list(self.offsets),
        }


@dataclass(frozen=True, slots=True)
class GuardReport:
    """What the guard of one backup checked and found.

    `percent` is the sample share asked for (0: off); `chunks_checked` and
    `bytes_reread` the sampled chunks and their bytes (read only for the
    guard: the cost); `lies` what they contradicted (empty for an honest
    driver). `max_chunks` is the cap per enhancer (None: a report of a
    version without one) and `chunks_wanted` the chunks the share alone
    would have sampled: more than `chunks_checked` when the cap lowered the
    sample (`capped`).
    """

    percent: float
    chunks_checked: int = 0
    bytes_reread: int = 0
    lies: tuple[Lie, ...] = ()
    max_chunks: int | None = None
    chunks_wanted: int | None = None

    @property
    def capped(self) -> bool:
        """True when the cap sampled fewer chunks than the share asked for."""
        return self.chunks_wanted is not None and self.chunks_wanted > self.chunks_checked

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GuardReport:
        """The inverse of `to_dict` (a dict without the cap's fields: an older worker's)."""
        max_chunks, wanted = d.get("max_chunks"), d.get("chunks_wanted")
        return cls(
            float(d["sample_percent"]),
            int(d["chunks_checked"]),
            int(d["bytes_reread"]),
            tuple(
                Lie(x["enhancer"], str(x["backend"]), str(x["driver"]), tuple(x["offsets"]))
                for x in d.get("lies", ())
            ),
            None if max_chunks is None else int(max_chunks),
            None if wanted is None else int(wanted),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``guard`` object of ``backup --json``.

        ``{"sample_percent", "chunks_checked", "bytes_reread", "lies",
        "max_chunks", "capped"}`` and, when capped, ``"chunks_wanted"``.
        """
        out: dict[str, Any] = {
            "sample_percent": self.percent,
            "chunks_checked": self.chunks_checked,
            "bytes_reread": self.bytes_reread,
            "lies": [lie.to_dict() for lie in self.lies],
            "max_chunks": self.max_chunks,
            "capped": self.capped,
        }
        if self.capped:
            out["chunks_wanted"] = self.chunks_wanted
        return out


@dataclass(frozen=True)
class GuardPlan:
    """A drawn sample and the widened ranges that make the backup read it.

    Give the backup `extents` and `changed` instead of the driver's;
    `holes` are the sampled chunk indices the driver reported as holes,
    `unchanged` those it reported unchanged, each with the parent's chunk
    there (None: the parent had a hole).
    """

    size: int
    chunk_size: int
    percent: float
    extents: Sequence[Extent] | None
    changed: Sequence[Extent] | None
    holes: tuple[int, ...]
    unchanged: Mapping[int, ChunkRef | None]
    max_chunks: int = DEFAULT_GUARD_MAX_CHUNKS
    #: The chunks the share alone would have sampled (more than drawn: capped).
    wanted: int = 0

    @property
    def bytes_sampled(self) -> int:
        """The bytes of the sampled chunks."""
        return sum(
            chunk_length(i, self.size, self.chunk_size) for i in (*self.holes, *self.unchanged)
        )

    def check(self, chunks: Sequence[ChunkRef], backend: str, driver: str) -> GuardReport:
        """Compare the backup's `chunks` (sorted by offset) with the driver's promises."""
        listed = ChunkList.of(chunks)
        offsets = listed.offsets()  # sorted: found by bisection, no dict of every chunk

        def at(offset: int) -> ChunkRef | None:
            i = bisect.bisect_left(offsets, offset)
            return listed[i] if i < len(offsets) and offsets[i] == offset else None

        cs = self.chunk_size
        lied_holes = tuple(i * cs for i in self.holes if at(i * cs) is not None)
        lied_unchanged = tuple(
            i * cs
            for i, parent in sorted(self.unchanged.items())
            if _digest(at(i * cs)) != _digest(parent)
        )
        lies = []
        if lied_unchanged:
            lies.append(Lie(CHANGED_BLOCKS, backend, driver, lied_unchanged))
        if lied_holes:
            lies.append(Lie(ALLOCATED_EXTENTS, backend, driver, lied_holes))
        for lie in lies:
            log.warning("%s", lie.message())
        return GuardReport(
            self.percent,
            len(self.holes) + len(self.unchanged),
            self.bytes_sampled,
            tuple(lies),
            self.max_chunks,
            self.wanted,
        )


def plan_guard(
    size: int,
    chunk_size: int,
    *,
    extents: Sequence[Extent] | None,
    changed: Sequence[Extent] | None,
    parent: Mapping[int, ChunkRef] | None,
    percent: float,
    max_chunks: int = DEFAULT_GUARD_MAX_CHUNKS,
    rng: random.Random | None = None,
) -> GuardPlan:
    """Draw the sample of a backup of a `size`-byte volume cut into `chunk_size` chunks.

    `extents`: the driver's allocated extents (None: not used); `changed`:
    the ranges changed since the parent (None: not used), with `parent` its
    chunks by offset. Draws ``min(max_chunks, max(1, ceil(percent% of n)))``
    of the ``n`` chunks each enhancer lets the backup skip, at random
    (`rng`, default a fresh `random.Random`), none when `percent` is 0.
    `ValueError` for a percent outside [0, 100] or a `max_chunks` below 1.
    """
    percent = check_percent(percent)
    max_chunks = check_max_chunks(max_chunks)
    rng = rng or random.Random()
    count = -(-size // chunk_size)
    everything: Ranges = [(0, count)] if count else []
    wanted = everything if extents is None else index_ranges(extents, size, chunk_size)
    holes: list[int] = []
    unchanged: dict[int, ChunkRef | None] = {}
    asked = 0  # what the share alone would sample
    if percent > 0 and extents is not None:
        holes, k = _sample(subtract(everything, wanted), percent, max_chunks, rng)
        asked += k
    if percent > 0 and changed is not None and parent is not None:
        reads = intersect(wanted, index_ranges(changed, size, chunk_size))
        drawn, k = _sample(subtract(wanted, reads), percent, max_chunks, rng)
        asked += k
        for i in drawn:
            unchanged[i] = parent.get(i * chunk_size)
    extra = [
        Extent(i * chunk_size, chunk_length(i, size, chunk_size)) for i in (*holes, *unchanged)
    ]
    return GuardPlan(
        size=size,
        chunk_size=chunk_size,
        percent=percent,
        extents=None if extents is None else [*extents, *extra[: len(holes)]],
        changed=None if changed is None else [*changed, *extra],
        holes=tuple(holes),
        unchanged=unchanged,
        max_chunks=max_chunks,
        wanted=asked,
    )


def enhancer_savings(plan: GuardPlan, bytes_read: int) -> dict[str, int]:
    """Bytes each enhancer let a backup skip: ``{enhancer: bytes_skipped}``.

    allocated-extents: the chunks that meet none of `plan.extents` (never
    read); changed-blocks: the chunks within them that the backup did not
    read (`bytes_read` is what it read). An enhancer not used is absent.
    """
    out: dict[str, int] = {}
    wanted = chunk_bytes(plan.extents, plan.size, plan.chunk_size)
    if plan.extents is not None:
        out[ALLOCATED_EXTENTS] = plan.size - wanted
    if plan.changed is not None:
        out[CHANGED_BLOCKS] = max(0, wanted - bytes_read)
    return out


def guard_stats(guard: Mapping[str, Any] | None) -> dict[str, int | str]:
    """What a manifest's ``stats`` record of a `GuardReport.to_dict` (None: not run).

    ``guard_sample_percent`` (str), ``guard_chunks_checked``,
    ``guard_bytes_reread``, ``guard_max_chunks`` (the cap per enhancer; absent
    in a report without one), after the cap lowered the sample
    ``guard_chunks_wanted`` (what the share alone would have sampled) and,
    after a lie, ``guard_lies``: the lies as compact JSON,
    ``[{"enhancer", "backend", "driver", "offsets"}, ...]``.
    """
    if not guard:
        return {}
    out: dict[str, int | str] = {
        "guard_sample_percent": f"{float(guard['sample_percent']):g}",
        "guard_chunks_checked": int(guard["chunks_checked"]),
        "guard_bytes_reread": int(guard["bytes_reread"]),
    }
    if guard.get("max_chunks") is not None:
        out["guard_max_chunks"] = int(guard["max_chunks"])
    if guard.get("capped") and guard.get("chunks_wanted") is not None:
        out["guard_chunks_wanted"] = int(guard["chunks_wanted"])
    if guard.get("lies"):
        out["guard_lies"] = json.dumps(guard["lies"], separators=(",", ":"))
    return out


def unguarded(size: int, chunk_size: int) -> GuardPlan:
    """The plan of a backup that reads everything: no enhancer, no sample."""
    return GuardPlan(size, chunk_size, 0.0, None, None, (), {}, wanted=0)


def driver_name(driver: object) -> str:
    """``module.Class`` of `driver`, as a lie names it."""
    return f"{type(driver).__module__}.{type(driver).__qualname__}"


def chunk_bytes(extents: Sequence[Extent] | None, size: int, chunk_size: int) -> int:
    """The bytes of the chunks that meet `extents` (None: the whole volume)."""
    if extents is None:
        return size
    total = 0
    for first, stop in index_ranges(extents, size, chunk_size):
        total += min(stop * chunk_size, size) - first * chunk_size
    return total


def chunk_length(index: int, size: int, chunk_size: int) -> int:
    """The length of chunk `index` (the last one may be shorter)."""
    return min(chunk_size, size - index * chunk_size)


def _digest(ref: ChunkRef | None) -> str | None:
    return None if ref is None else ref.digest


def _sample(
    ranges: Ranges, percent: float, max_chunks: int, rng: random.Random
) -> tuple[list[int], int]:
    """``min(max_chunks, max(1, ceil(percent% of n)))`` distinct indices of `ranges`,
    ascending, and how many the share alone asked for (``min(n, max(1, ...))``)."""
    starts: list[int] = []
    n = 0
    for lo, hi in ranges:
        starts.append(n)
        n += hi - lo
    if n == 0:
        return [], 0
    asked = min(n, max(1, math.ceil(n * percent / 100)))
    out = []
    for p in sorted(rng.sample(range(n), min(asked, max_chunks))):
        r = bisect.bisect_right(starts, p) - 1
        out.append(ranges[r][0] + p - starts[r])
    return out, asked
