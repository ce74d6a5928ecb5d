"""Backup and restore throughput of pieceworks against a bare Python baseline.

Builds the DESIGN.md "realistic mix" volume (4 MiB blocks, interleaved:
random, zeros, random, log-like text; every block distinct) and measures,
in one run and on the same data:

  (a) bare backup baseline: readinto a reused buffer -> sha256 -> zstd-1 ->
      one file per block (no fsync), one thread;
  (b) pieceworks `backup_chunks` (FileDriver -> PosixStore, durable=False
      and durable=True);
  (c) bare restore baseline: read file -> zstd decompress -> sha256 -> pwrite;
  (d) pieceworks `restore_chunks` into `FileDriver.open_write`;
  (e) an incremental after changing 1% of the blocks (with and without the
      changed extents);
  (f) a sparse volume (8x the size, holding a quarter of it in data) against
      a dense volume holding the same data;
  (g) peak RSS of a backup of a 1x and an 8x volume, each in a child process.

The page cache cannot be dropped here, so every read (baseline and
pieceworks alike) comes from the page cache; each figure is the best of
``--repeat`` runs. MB/s are 10^6 bytes of volume per second.

    .venv/bin/python bench/backup_throughput.py --size-mib 1024
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import zstandard

from pieceworks.common_algorithms import Backend, BackupRequest, EngineOptions, Store, backup
from pieceworks.common_algorithms.format.chunk_pipeline import (
    BackupResult,
    backup_chunks,
    restore_chunks,
)
from pieceworks.common_algorithms.format.manifest import Manifest, write_manifest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import Extent, VolumeRef
from pieceworks.protocols.chunks import chunk_key

BLOCK = 4 << 20
MiB = 1 << 20


# -- the volume ---------------------------------------------------------------------


class Blocks:
    """Distinct 4 MiB blocks of the realistic mix, cheap to make.

    Random blocks come from a small pool of random data, each made distinct
    by a unique header (chunks are hashed and compressed independently, so
    this costs the pipeline exactly what fresh random data costs); text
    blocks are log lines with their digits permuted per block.
    """

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self._rng = rng
        self._pool = [rng.randbytes(BLOCK) for _ in range(8)]
        lines = []
        n = 0
        while n < BLOCK:
            line = (
                f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z "
                f"{rng.choice(['INFO', 'INFO', 'INFO', 'WARN', 'DEBUG', 'ERROR'])} "
                f"req={rng.getrandbits(48):012x} user={rng.randint(1, 99999)} "
                f"path=/api/v{rng.randint(1, 3)}/{rng.choice(['items', 'orders', 'users'])}/"
                f"{rng.randint(1, 10**6)} status={rng.choice([200, 200, 201, 404, 500])} "
                f"took={rng.randint(1, 5000)}ms\n"
            ).encode()
            lines.append(line)
            n += len(line)
        self._text = b"".join(lines)[:BLOCK]

    def block(self, index: int) -> bytes:
        """Block `index` of the volume (zeros for every 4th block + 1)."""
        kind = index % 4
        if kind == 1:
            return bytes(BLOCK)
        header = f"block {index:012d} {self._rng.getrandbits(64):016x}\n".encode()
        if kind == 3:
            digits = list(b"0123456789")
            random.Random(index).shuffle(digits)
            body = self._text.translate(bytes.maketrans(b"0123456789", bytes(digits)))
        else:
            body = self._pool[index % len(self._pool)]
        return header + body[len(header) :]


def write_volume(path: Path, size: int, placed: Iterator[tuple[int, bytes]]) -> None:
    """A file of `size` bytes (sparse) holding each (offset, data) of `placed`."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in placed:
            os.pwrite(f.fileno(), data, offset)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(BLOCK)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(memoryview(buf)[:n])
    return h.hexdigest()


def warm(path: Path) -> None:
    """Read the file once so every measurement reads it from the page cache."""
    sha256_file(path)


# -- baselines ------------------------------------------------------------------------


def baseline_backup(volume: Path, out: Path) -> list[tuple[int, int, str]]:
    """(a): read -> sha256 -> zstd-1 -> one file per block; return (offset, length, digest)."""
    out.mkdir()
    compressor = zstandard.ZstdCompressor(level=1)
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    blocks = []
    offset = 0
    with open(volume, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            data = view[:n]
            digest = hashlib.sha256(data).hexdigest()
            with open(out / digest, "wb") as o:
                o.write(compressor.compress(data))
            blocks.append((offset, n, digest))
            offset += n
    return blocks


def baseline_restore(blocks: list[tuple[int, int, str]], src: Path, target: Path) -> None:
    """(c): read file -> zstd decompress -> sha256 check -> pwrite."""
    decompressor = zstandard.ZstdDecompressor()
    size = blocks[-1][0] + blocks[-1][1] if blocks else 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        for offset, length, digest in blocks:
            with open(src / digest, "rb", buffering=0) as f:
                plain = decompressor.decompress(f.read(), max_output_size=length)
            if hashlib.sha256(plain).hexdigest() != digest:
                raise RuntimeError(f"baseline restore: bad block at {offset}")
            os.pwrite(fd, plain, offset)
    finally:
        os.close(fd)


# -- pieceworks -----------------------------------------------------------------------------


def pw_backup(
    driver: FileDriver,
    volume_id: str,
    store: PosixStore,
    parent: Manifest | None = None,
    read_only: list[Extent] | None = None,
) -> BackupResult:
    """(b)/(e)/(f): the backup data path as a strategy runs it (extents included)."""
    volume = VolumeRef(volume_id)
    extents = driver.allocated_extents(volume)
    with closing(driver.open_read(volume)) as reader:
        return backup_chunks(
            reader, store, chunk_size=BLOCK, extents=extents, parent=parent, read_only=read_only
        )


def as_manifest(result: BackupResult, backup_id: str, size: int) -> Manifest:
    return Manifest(
        backup_id=backup_id,
        volume_id="vol",
        backend="file",
        size=size,
        chunk_size=BLOCK,
        codec="zstd",
        chunks=result.chunks,
        created=time.time(),
        strategy="direct-stream",
        stats=result.stats.as_manifest_stats(),
    )


# -- measurement -------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    seconds: float
    nbytes: int
    note: str = ""

    @property
    def mbps(self) -> float:
        return self.nbytes / self.seconds / 1e6 if self.seconds else 0.0


def best_of(repeat: int, setup: Callable[[], None], run: Callable[[], object]) -> float:
    """The shortest of `repeat` timed runs of `run`, each after an untimed `setup`.

    Each run starts with no dirty data in the page cache (``sync``), so that
    the write-back of one measurement does not slow down the next.
    """
    times = []
    for _ in range(repeat):
        setup()
        os.sync()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def fresh(path: Path) -> Callable[[], None]:
    def reset() -> None:
        shutil.rmtree(path, ignore_errors=True)

    return reset


def child_backup(volume_dir: str, volume_id: str, store_dir: str) -> None:
    """(g) in a child process: one backup, then print its peak RSS as JSON."""
    before = _status("VmRSS")
    driver = FileDriver(volume_dir)
    started = time.perf_counter()
    result = pw_backup(driver, volume_id, PosixStore(store_dir, durable=False))
    print(
        json.dumps(
            {
                "vmhwm_kib": _status("VmHWM"),
                "rss_before_kib": before,
                "seconds": time.perf_counter() - started,
                "bytes_read": result.stats.bytes_read,
            }
        )
    )


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss(volume_dir: Path, volume_id: str, store_dir: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-backup", str(volume_dir), volume_id, str(store_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    shutil.rmtree(store_dir, ignore_errors=True)
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


class Bench:
    """One run of every measurement on one work directory."""

    def __init__(self, root: Path, size_mib: int, repeat: int) -> None:
        self.root, self.repeat = root, repeat
        self.nblocks = max(4, size_mib * MiB // BLOCK)
        self.size = self.nblocks * BLOCK
        self.vols = root / "volumes"
        self.vols.mkdir()
        self.driver = FileDriver(self.vols)
        self.rows: list[Row] = []
        self.figures: dict[str, float] = {
            "size_bytes": self.size,
            "block": BLOCK,
            "repeat": repeat,
        }
        gen = Blocks(seed=1)
        placed = ((i * BLOCK, gen.block(i)) for i in range(self.nblocks))
        write_volume(self.vols / "vol", self.size, placed)
        self.original = sha256_file(self.vols / "vol")
        warm(self.vols / "vol")
        self.store = PosixStore(root / "store", durable=False)
        self.manifest: Manifest | None = None

    def run(self) -> None:
        self.backup()
        self.restore()
        self.incremental()
        self.sparse()
        self.memory()

    def backup(self) -> None:
        """(a) and (b)."""
        base_dir = self.root / "baseline"
        t = best_of(
            self.repeat, fresh(base_dir), lambda: baseline_backup(self.vols / "vol", base_dir)
        )
        base = Row("(a) bare backup baseline (1 thread, no fsync)", t, self.size)
        self.rows.append(base)
        for durable in (False, True):
            store_dir = self.root / f"store-{'durable' if durable else 'fast'}"

            def once(store_dir: Path = store_dir, durable: bool = durable) -> None:
                pw_backup(self.driver, "vol", PosixStore(store_dir, durable=durable))

            t = best_of(self.repeat, fresh(store_dir), once)
            shutil.rmtree(store_dir)
            label = "durable=True (fsync per object)" if durable else "durable=False"
            note = f"{base.seconds / t:.2f}x baseline"
            self.rows.append(Row(f"(b) pieceworks backup, {label}", t, self.size, note))
            key = "backup_durable_mbps" if durable else "backup_mbps"
            self.figures[key] = self.rows[-1].mbps
        self.figures["backup_baseline_mbps"] = base.mbps
        self.figures["backup_vs_baseline"] = self.figures["backup_mbps"] / base.mbps
        self.whole_operation(base)
        full = pw_backup(self.driver, "vol", self.store)  # the store the rest works on
        self.manifest = as_manifest(full, "full", self.size)
        write_manifest(self.store, self.manifest)
        self.figures["full_bytes_stored"] = full.stats.bytes_stored
        data = self.size - full.stats.holes * BLOCK
        self.figures["compression_ratio"] = data / full.stats.bytes_stored

    def whole_operation(self, base: Row) -> None:
        """(b2) the user-facing `backup()`: plan, TaskFlow flow, lease, manifest.

        direct-stream (volume not in use) with TaskFlow's SQLite persistence
        (the embedded default), and snapshot-stream (in use), whose temporary
        snapshot is a full copy where the filesystem has no reflink.
        """
        backend = Backend.of("bench", self.driver)
        cases = (
            ("direct-stream, SQLite persistence", False),
            ("snapshot-stream (in use)", True),
        )
        for label, in_use in cases:
            store_dir = self.root / "store-op"
            db = self.root / "taskflow.db"

            def once(store_dir: Path = store_dir, in_use: bool = in_use, db: Path = db) -> None:
                store = Store("bench", PosixStore(store_dir, durable=True))
                options = EngineOptions(persistence=f"sqlite:///{db}") if not in_use else None
                backup(backend, store, BackupRequest("vol", in_use=in_use), options=options)

            def reset(store_dir: Path = store_dir, db: Path = db) -> None:
                fresh(store_dir)()
                db.unlink(missing_ok=True)

            t = best_of(self.repeat, reset, once)
            shutil.rmtree(store_dir)
            note = f"{base.seconds / t:.2f}x baseline"
            self.rows.append(Row(f"(b2) backup() via TaskFlow: {label}", t, self.size, note))
            key = "op_snapshot_stream_mbps" if in_use else "op_direct_stream_mbps"
            self.figures[key] = self.rows[-1].mbps

    def restore(self) -> None:
        """(c) and (d)."""
        assert self.manifest is not None
        manifest, blocks = self.manifest, baseline_backup_index(self.vols / "vol")
        target = self.vols / "restored-baseline"
        base_dir = self.root / "baseline"
        t = best_of(self.repeat, lambda: None, lambda: baseline_restore(blocks, base_dir, target))
        base = Row("(c) bare restore baseline (1 thread, no fsync)", t, self.size)
        self.rows.append(base)
        target.unlink()
        shutil.rmtree(base_dir)
        timings = []
        for _ in range(self.repeat):
            writer = self.driver.open_write(VolumeRef("restored"), self.size)
            os.sync()
            started = time.perf_counter()
            try:
                restore_chunks(self.store, manifest, writer)
            except BaseException:
                writer.abort()
                raise
            restored = time.perf_counter()
            writer.commit()
            timings.append((restored - started, time.perf_counter() - restored))
        t, commit = min(timings)
        if sha256_file(self.vols / "restored") != self.original:
            raise RuntimeError("pieceworks restore is not byte-exact")
        (self.vols / "restored").unlink()
        note = f"{base.seconds / t:.2f}x baseline"
        self.rows.append(Row("(d) pieceworks restore (before commit)", t, self.size, note))
        self.rows.append(Row("(d) pieceworks restore incl. commit (fsync)", t + commit, self.size))
        self.figures["restore_baseline_mbps"] = base.mbps
        self.figures["restore_mbps"] = self.rows[-2].mbps
        self.figures["restore_vs_baseline"] = self.rows[-2].mbps / base.mbps
        self.figures["restore_with_commit_mbps"] = self.rows[-1].mbps

    def incremental(self) -> None:
        """(e): change 1% of the blocks (spread evenly), back up with the full as parent."""
        assert self.manifest is not None
        count = max(1, round(self.nblocks / 100))
        changed = sorted({k * self.nblocks // count for k in range(count)})
        with open(self.vols / "vol", "r+b") as f:
            for i in changed:
                os.pwrite(f.fileno(), os.urandom(4096), i * BLOCK + 8192)
        extents = [Extent(i * BLOCK + 8192, 4096) for i in changed]
        parent_digests = self.manifest.digests()
        for label, read_only in (("all read, dedup", None), ("changed extents only", extents)):
            os.sync()
            started = time.perf_counter()
            incr = pw_backup(self.driver, "vol", self.store, self.manifest, read_only)
            t = time.perf_counter() - started
            for ref in incr.chunks:  # so that the next variant has to store them again
                if ref.digest not in parent_digests:
                    self.store.delete(chunk_key(ref.digest))
            pct = 100 * incr.stats.bytes_stored / self.size
            read = incr.stats.bytes_read / MiB
            note = f"stored {pct:.2f}% of volume, read {read:.0f} MiB"
            self.rows.append(
                Row(f"(e) incremental, 1% of blocks changed ({label})", t, self.size, note)
            )
            key = "incremental" if read_only is None else "incremental_changed_extents"
            self.figures[f"{key}_stored_pct"] = pct
            self.figures[f"{key}_seconds"] = t
        self.figures["incremental_changed_blocks"] = len(changed)

    def sparse(self) -> None:
        """(f): a volume 8x the size holding a quarter of the size in data, vs a dense one."""
        data_blocks = max(4, self.nblocks // 4)
        sparse_size = 8 * self.size
        stride = sparse_size // data_blocks // BLOCK * BLOCK
        gen = Blocks(seed=2)
        sparse = ((k * stride, gen.block(k)) for k in range(data_blocks))
        write_volume(self.vols / "sparse", sparse_size, sparse)
        dense = ((k * BLOCK, gen.block(k)) for k in range(data_blocks))
        write_volume(self.vols / "dense", data_blocks * BLOCK, dense)
        times: dict[str, float] = {}
        for _ in range(max(3, self.repeat)):  # interleaved: both see the same conditions
            for name in ("dense", "sparse"):
                store_dir = self.root / f"store-{name}"

                def once(name: str = name, store_dir: Path = store_dir) -> None:
                    pw_backup(self.driver, name, PosixStore(store_dir, durable=False))

                t = best_of(1, fresh(store_dir), once)
                times[name] = min(t, times.get(name, t))
        for name in ("dense", "sparse"):
            shutil.rmtree(self.root / f"store-{name}")
            (self.vols / name).unlink()
        ratio = times["sparse"] / times["dense"]
        data = data_blocks * BLOCK
        self.rows.append(Row(f"(f) dense {data // MiB} MiB volume", times["dense"], data))
        label = f"(f) sparse {sparse_size // MiB} MiB volume, same data"
        self.rows.append(Row(label, times["sparse"], data, f"{ratio:.2f}x the dense time"))
        self.figures["sparse_vs_dense_time"] = ratio

    def memory(self) -> None:
        """(g): peak RSS of a backup of this volume and of a dense one 8x its size."""
        results = [(self.size, peak_rss(self.vols, "vol", self.root / "store-rss"))]
        big = 8 * self.nblocks
        gen = Blocks(seed=3)
        write_volume(
            self.vols / "big", big * BLOCK, ((i * BLOCK, gen.block(i)) for i in range(big))
        )
        results.append((big * BLOCK, peak_rss(self.vols, "big", self.root / "store-rss")))
        (self.vols / "big").unlink()
        for volume_size, r in results:
            peak, before = r["vmhwm_kib"] / 1024, r["rss_before_kib"] / 1024
            note = f"peak RSS {peak:.0f} MiB (after imports {before:.0f} MiB)"
            label = f"(g) backup of {volume_size // MiB} MiB in a child process"
            self.rows.append(Row(label, r["seconds"], volume_size, note))
            self.figures[f"peak_rss_mib_{volume_size // MiB}"] = peak
        self.figures["peak_rss_mib_max"] = max(r["vmhwm_kib"] / 1024 for _, r in results)


def baseline_backup_index(volume: Path) -> list[tuple[int, int, str]]:
    """The (offset, length, sha256) of each block, as the baseline stored them."""
    out = []
    buf = bytearray(BLOCK)
    offset = 0
    with open(volume, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            out.append((offset, n, hashlib.sha256(memoryview(buf)[:n]).hexdigest()))
            offset += n
    return out


def report(bench: Bench) -> None:
    rows, figures = bench.rows, bench.figures
    print("All reads come from the page cache (it cannot be dropped here), for baseline and")
    print(f"pieceworks alike; times are the best of {bench.repeat} runs; MB/s = 10^6 B/s.")
    print()
    width = max(len(r.name) for r in rows)
    print(f"{'measurement':<{width}}  {'seconds':>8}  {'MB/s':>8}  note")
    for r in rows:
        print(f"{r.name:<{width}}  {r.seconds:8.3f}  {r.mbps:8.1f}  {r.note}")
    checks = [
        ("backup >= 50% of bare baseline", figures["backup_vs_baseline"] >= 0.5),
        ("restore >= 50% of bare baseline", figures["restore_vs_baseline"] >= 0.5),
        ("incremental stores < 2% of volume", figures["incremental_stored_pct"] < 2),
        ("sparse 8x < 2x dense time", figures["sparse_vs_dense_time"] < 2),
        ("peak RSS < 256 MiB", figures["peak_rss_mib_max"] < 256),
    ]
    print()
    for name, ok in checks:
        print(f"target {name:<36} {'ok' if ok else 'MISSED'}")
    print(json.dumps({**figures, "targets_met": all(ok for _, ok in checks)}, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="volume size (default 1024)")
    parser.add_argument("--dir", help="work directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure, best kept")
    parser.add_argument("--child-backup", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_backup:
        child_backup(*args.child_backup)
        return 0
    if args.dir:
        root = Path(args.dir)
        root.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="pieceworks-bench-", dir=root))
    else:
        root = Path(tempfile.mkdtemp(prefix="pieceworks-bench-", dir="/var/tmp"))
    try:
        bench = Bench(root, args.size_mib, max(1, args.repeat))
        bench.run()
        report(bench)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
