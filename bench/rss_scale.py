"""Peak RSS of ``pieceworks backup`` against the number of chunks, through the CLI.

What a backup holds per chunk (its digest, its chunk ref, the manifest being
written) grows with the number of chunks, not with the bytes: a 1 TiB volume
in the default 4 MiB chunks has 262,144 of them. Writing 1 TiB is out of
reach here, so this makes the same numbers of chunks cheaply: sparse volumes
backed up with ``--chunk-size 64KiB``, each chunk holding a distinct 28-byte
write (so no chunk is a hole or a duplicate) in its own 4 KiB block. For
each volume size it runs ``pieceworks backup`` (file driver into a fresh
posix store, embedded defaults, a private ``PIECEWORKS_HOME``) in a child
process measured with ``os.wait4``, reports peak RSS and wall seconds, fits
a line through the points (MiB per 1,000 chunks) and projects the peak RSS
of a 262,144-chunk backup (1 TiB in 4 MiB chunks) from it.

    .venv/bin/python bench/rss_scale.py --sizes-gib 1 2 4
    .venv/bin/python bench/rss_scale.py --sizes-gib 1 2 4 --incremental

With ``--incremental`` it measures, after each full backup, an incremental
one (``backup --incremental``) after a change of 1% of the chunks: what an
incremental holds per chunk of its parent (the parent's chunk list, the
chunks it knows as stored) on top of its own.

The projection is a projection: a 4 MiB-chunk backup also holds its read
buffers (about 20 MiB more at the default two threads, see
``bench/cli_vs_peers.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CHUNK = 64 << 10
GiB = 1 << 30
PIECEWORKS = str(Path(sys.executable).with_name("pieceworks"))
TIB_CHUNKS = (1 << 40) // (4 << 20)


def make_volume(path: Path, size: int) -> int:
    """A sparse `size`-byte volume with a distinct write in every `CHUNK`; the chunk count."""
    chunks = size // CHUNK
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for i in range(chunks):
            os.pwrite(fd, b"chunk %012d " % i + os.urandom(8), i * CHUNK)
    finally:
        os.close(fd)
    return chunks


def change(path: Path, chunks: int, share: float = 0.01) -> None:
    """Write a new distinct value into `share` of the `chunks` of the volume at `path`."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for i in range(0, chunks, round(1 / share)):
            os.pwrite(fd, b"changed %010d " % i + os.urandom(8), i * CHUNK)
    finally:
        os.close(fd)


def backup(home: Path, *extra: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one ``pieceworks backup`` under `home`."""
    env = {**os.environ, "PIECEWORKS_HOME": str(home)}
    argv = [PIECEWORKS, "backup", "--volume", "v", "--chunk-size", "64KiB", "-q", *extra]
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {status}")
    return wall, usage.ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-gib", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="measure an incremental backup after a 1%% change, after each full one",
    )
    args = parser.parse_args(argv)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="pw-rss-"))
    try:
        for size in args.sizes_gib:
            home = work / f"h{size}"
            (home / "volumes").mkdir(parents=True)
            chunks = make_volume(home / "volumes" / "v", size * GiB)
            wall, rss = backup(home)
            if args.incremental:
                change(home / "volumes" / "v", chunks)
                wall, rss = backup(home, "--incremental")
            rows.append({"chunks": chunks, "peak_rss_mib": round(rss, 1), "seconds": wall})
            print(f"{chunks:8d} chunks  peak RSS {rss:6.1f} MiB  {wall:6.1f} s", flush=True)
            shutil.rmtree(home)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(rows)
    mean_x = sum(r["chunks"] for r in rows) / n
    mean_y = sum(r["peak_rss_mib"] for r in rows) / n
    spread = sum((r["chunks"] - mean_x) ** 2 for r in rows)
    slope = (
        sum((r["chunks"] - mean_x) * (r["peak_rss_mib"] - mean_y) for r in rows) / spread
        if spread
        else 0.0
    )
    projected = mean_y + slope * (TIB_CHUNKS - mean_x)
    print(f"slope {slope * 1000:.2f} MiB per 1,000 chunks ({slope * 2**20:.0f} bytes per chunk)")
    kind = "incremental" if args.incremental else "full"
    print(
        f"projected peak RSS of {'an' if args.incremental else 'a'} {kind} backup of"
        f" {TIB_CHUNKS:,} chunks (1 TiB, 4 MiB chunks): {projected:.0f} MiB"
    )
    if args.json:
        report = {
            "backup": kind,
            "rows": rows,
            "mib_per_chunk": slope,
            "projected_1tib_mib": projected,
        }
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
