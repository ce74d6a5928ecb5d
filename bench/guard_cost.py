"""What the sampling guard costs an incremental backup through changed-blocks.

A file volume (``--size-mib``, random data, 4 MiB chunks) on an honest
changed-blocks driver defined here (the file driver plus an in-memory log
of in-place writes), backed up in full into two POSIX stores. Each trial
rewrites ``--changed-pct`` of the chunks at random, then runs the same
incremental into both stores, one with the guard off (``guard_percent=0``)
and one at ``--guard-pct`` (default 1, the default of ``pieceworks
backup``), in alternating order (interleaved: the machine is noisy). Every
guarded backup must find no lie.

Prints, per mode, the median seconds and bytes read, the guard's bytes
re-read, and the ratio guarded / unguarded of the medians; last, one JSON
line with the figures.

    .venv/bin/python bench/guard_cost.py --size-mib 1024 --trials 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import ChangedBlocks, Extent, Source, StoreSpec

MiB = 1 << 20
CHUNK = 4 * MiB


class LoggedFileDriver(FileDriver, ChangedBlocks):
    """The file driver plus changed-blocks from a log of `write_in_place` calls (honest)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self.log: list[tuple[int, Extent]] = []  # (generation, extent written)

    def write_in_place(self, volume_id: str, offset: int, data: bytes) -> None:
        fd = os.open(os.path.join(self._root, volume_id), os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        self.log.append((len(self.log) + 1, Extent(offset, len(data))))

    def change_token(self, source: Source) -> str:
        return str(len(self.log))

    def changed_extents(self, source: Source, since: str) -> Sequence[Extent]:
        return [e for generation, e in self.log if generation > int(since)]


def _store(root: Path, name: str) -> Store:
    path = root / name
    return Store(name, PosixStore(path), StoreSpec(name, "posix", {"path": str(path)}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--changed-pct", type=float, default=1.0)
    parser.add_argument("--guard-pct", type=float, default=1.0)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="pw-guard-bench-") as tmp:
        root = Path(tmp)
        (root / "volumes").mkdir()
        driver = LoggedFileDriver(root / "volumes")
        size = args.size_mib * MiB
        with open(root / "volumes" / "vol", "wb") as f:
            for _ in range(size // MiB):
                f.write(rng.randbytes(MiB))
        backend = Backend.of("bench", driver)
        stores = {"off": _store(root, "off"), "on": _store(root, "on")}
        percent = {"off": 0.0, "on": args.guard_pct}
        for s in stores.values():
            backup(backend, s, BackupRequest("vol", incremental=True, chunk_size=CHUNK))
        seconds: dict[str, list[float]] = {"off": [], "on": []}
        read: dict[str, list[int]] = {"off": [], "on": []}
        reread: list[int] = []
        chunks = size // CHUNK
        for trial in range(args.trials):
            for index in rng.sample(range(chunks), max(1, round(chunks * args.changed_pct / 100))):
                driver.write_in_place("vol", index * CHUNK + 4096, rng.randbytes(4096))
            for mode in ("off", "on") if trial % 2 == 0 else ("on", "off"):
                request = BackupRequest(
                    "vol", incremental=True, chunk_size=CHUNK, guard_percent=percent[mode]
                )
                started = time.perf_counter()
                out = backup(backend, stores[mode], request)
                seconds[mode].append(time.perf_counter() - started)
                read[mode].append(out.bytes_read)
                if mode == "on":
                    assert out.guard is not None and not out.guard.lies, out.guard
                    reread.append(out.guard.bytes_reread)
        del driver
    med = {m: statistics.median(v) for m, v in seconds.items()}
    print(
        f"incremental after {args.changed_pct:g}% changed, {args.size_mib} MiB volume,"
        f" 4 MiB chunks, {args.trials} interleaved trials"
    )
    for mode in ("off", "on"):
        label = "guard off" if mode == "off" else f"guard {args.guard_pct:g}%"
        mib = statistics.median(read[mode]) / MiB
        print(f"  {label:<10} median {med[mode]:.3f} s, read {mib:.1f} MiB")
    print(f"  guard re-read (median) {statistics.median(reread) / MiB:.1f} MiB")
    print(f"  ratio guarded / unguarded (medians): {med['on'] / med['off']:.3f}")
    figures = {
        "size_mib": args.size_mib,
        "changed_pct": args.changed_pct,
        "guard_pct": args.guard_pct,
        "trials": args.trials,
        "seconds_off": round(med["off"], 4),
        "seconds_on": round(med["on"], 4),
        "bytes_read_off": statistics.median(read["off"]),
        "bytes_read_on": statistics.median(read["on"]),
        "bytes_reread": statistics.median(reread),
        "ratio": round(med["on"] / med["off"], 4),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
