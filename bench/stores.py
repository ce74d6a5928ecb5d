"""One volume backed up into POSIX, Swift and S3 stores; offload vs snapshot-stream.

Builds the DESIGN.md "realistic mix" volume with `backup_throughput`'s volume
builder (4 MiB blocks, interleaved: random, zeros, random, log-like text;
every block distinct), starts a real single-node Swift with its S3 API on
loopback (`tests.fixtures.swift_server.running_swift`) and a real remote
target process (`tests.support.targets.running_target`), and measures, in
one run and on the same data:

  (1) a full `backup()` of the volume from a `FileDriver` into a POSIX store
      (durable: fsync per object), a `SwiftStore` and an `S3Store`, each a
      fresh store, ``--repeat`` rounds (default 2; each round starts with
      the next store); not in use: direct-stream; with ``--in-use``:
      snapshot-stream (the strategy is forced and printed, and so is what
      the default plan would have chosen);
  (2) a `restore()` of each of those backups into a new `FileDriver` volume
      (stream-in), checked byte for byte (sha256) against the original;
  (3) the same volume on a remote target, backed up while in use by offload
      (`RemoteDriver`: the target snapshots, chunks, compresses and writes
      to the store itself) against a `FileDriver` on the target's own
      directory backed up by snapshot-stream (what the manager does when
      the backend is local), into a fresh POSIX store and, unless left out,
      a fresh Swift container; ``--repeat`` runs each, the order alternated.

Reported: seconds, MB/s (10^6 bytes of volume per second), the manager's
CPU seconds (``getrusage(RUSAGE_SELF)``: this process, every thread), the
target's CPU seconds (from ``/proc``), `bytes_through_manager`, the
`RemoteDriver`'s `wire_bytes` and the bytes stored. Every read comes from the
page cache (it cannot be dropped here); the stores write to the same disk.

    .venv/bin/python bench/stores.py --size-mib 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backup_throughput import BLOCK, Blocks, MiB, sha256_file, warm, write_volume

from pieceworks.common_algorithms import (
    Backend,
    BackupOutcome,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    plan_backup,
    restore,
)
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.drivers.s3_store import S3Store
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import IObjectStore, StoreSpec
from tests.fixtures.swift_server import SwiftServer, running_swift
from tests.support.targets import running_target

__all__ = [
    "Sample",
    "find_process",
    "format_table",
    "make_volume",
    "measure",
    "process_cpu_seconds",
    "work_dir",
]

T = TypeVar("T")
STORE_KINDS = ("posix", "swift", "s3")


# -- helpers shared with bench/replicate.py ---------------------------------------------


def make_volume(path: Path, size_mib: int, seed: int = 1) -> int:
    """Write the realistic-mix volume at `path` (whole 4 MiB blocks); return its size."""
    nblocks = max(4, size_mib * MiB // BLOCK)
    gen = Blocks(seed=seed)
    write_volume(path, nblocks * BLOCK, ((i * BLOCK, gen.block(i)) for i in range(nblocks)))
    warm(path)
    return nblocks * BLOCK


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_process(*words: str) -> int:
    """The pid of the one process whose command line holds every one of `words`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if all(w in args for w in words):
            found.append(int(entry.name))
    if len(found) != 1:
        raise RuntimeError(f"expected one process with {words}, found {found}")
    return found[0]


@dataclass(frozen=True)
class Sample:
    """One timed operation: wall time and CPU seconds of the manager and others."""

    seconds: float
    manager_cpu: float  # this process, every thread (RUSAGE_SELF)
    children_cpu: float  # children waited for meanwhile (qemu-img, ...: RUSAGE_CHILDREN)
    others_cpu: float  # the processes named by `pids` (remote targets)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(run: Callable[[], T], pids: Sequence[int] = ()) -> tuple[T, Sample]:
    """Run `run` once after an untimed ``sync`` (no dirty pages left from earlier work)."""
    os.sync()
    others = sum(process_cpu_seconds(p) for p in pids)
    own, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    return result, Sample(
        seconds,
        _cpu(resource.RUSAGE_SELF) - own,
        _cpu(resource.RUSAGE_CHILDREN) - children,
        sum(process_cpu_seconds(p) for p in pids) - others,
    )


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A plain-text table; the first `left` columns left-aligned, the others right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            f"{c:<{w}}" if i < left else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


@contextmanager
def work_dir(given: str | None, keep: bool, prefix: str) -> Iterator[Path]:
    """A fresh directory (under `given` or /var/tmp), removed at the end unless `keep`."""
    parent = Path(given) if given else Path("/var/tmp")
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield root
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds else 0.0


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class Row:
    """One measured operation of section (1)/(2)."""

    store: str
    operation: str
    strategy: str
    run: int
    sample: Sample
    size: int
    bytes_stored: int | None
    through_manager: int
    check: str


@dataclass
class OffloadRow:
    """One measured backup of section (3)."""

    store: str
    strategy: str
    run: int
    sample: Sample
    size: int
    bytes_stored: int
    through_manager: int
    wire_bytes: int | None
    same_chunks: bool | None = None


@dataclass
class Bench:
    root: Path
    size_mib: int
    stores: tuple[str, ...]
    offload_stores: tuple[str, ...]
    in_use: bool
    repeat: int
    rows: list[Row] = field(default_factory=list)
    offload_rows: list[OffloadRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    swift: SwiftServer | None = None
    size: int = 0
    original: str = ""

    def open_store(self, kind: str, label: str) -> Store:
        """A fresh store of `kind` (its own directory, container or bucket)."""
        name = f"pw-bench-{uuid.uuid4().hex[:8]}-{label}"
        options: dict[str, str]
        objects: IObjectStore
        if kind == "posix":
            path = self.root / "stores" / name
            options = {"path": str(path)}  # durable: fsync per object, as in production
            objects = PosixStore(path)
        else:
            assert self.swift is not None
            if kind == "swift":
                options = self.swift.swift_options(name)
                objects = SwiftStore(**options)
            else:
                options = self.swift.s3_options(name)
                objects = S3Store(**options)
        return Store(kind, objects, StoreSpec(kind, kind, options))

    def run(self) -> None:
        volumes = self.root / "volumes"
        volumes.mkdir()
        started = time.perf_counter()
        self.size = make_volume(volumes / "vol", self.size_mib)
        self.original = sha256_file(volumes / "vol")
        print(
            f"volume: {self.size // MiB} MiB realistic mix, written and hashed in"
            f" {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        with ExitStack() as stack:
            if {"swift", "s3"} & {*self.stores, *self.offload_stores}:
                started = time.perf_counter()
                self.swift = stack.enter_context(running_swift(workdir=self.root / "swift"))
                print(f"swift started in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            self.store_round_trips(volumes)
            if self.offload_stores:
                self.offload_vs_stream(volumes / "vol")

    def store_round_trips(self, volumes: Path) -> None:
        """(1) and (2): backup from, and restore into, a FileDriver, per store.

        ``--repeat`` rounds; each round starts with the next store, so that
        no store is always the first one measured.
        """
        backend = Backend.of("file", FileDriver(volumes))
        strategy = "snapshot-stream" if self.in_use else "direct-stream"
        probe = Store("probe", PosixStore(self.root / "probe", durable=False))
        default = plan_backup(backend, probe, BackupRequest("vol", in_use=self.in_use)).chosen
        self.notes.append(
            f"file backend, in_use={self.in_use}: strategy forced to {strategy};"
            f" the default plan would choose {default}"
        )
        for run in range(self.repeat):
            shift = run % len(self.stores)
            for kind in self.stores[shift:] + self.stores[:shift]:
                self.round_trip(backend, volumes, kind, strategy, run)

    def round_trip(
        self, backend: Backend, volumes: Path, kind: str, strategy: str, run: int
    ) -> None:
        store = self.open_store(kind, "rt")
        request = BackupRequest("vol", in_use=self.in_use, strategies=(strategy,))
        out, sample = measure(partial(backup, backend, store, request))
        self.rows.append(
            Row(
                kind,
                "backup",
                out.strategy,
                run,
                sample,
                self.size,
                out.bytes_stored,
                out.bytes_through_manager,
                "",
            )
        )
        self.progress(f"{kind} backup (run {run + 1})", sample)
        target = f"restored-{kind}"
        back, sample = measure(
            partial(restore, backend, store, RestoreRequest(out.backup_id, target))
        )
        ok = sha256_file(volumes / target) == self.original
        (volumes / target).unlink()
        self.rows.append(
            Row(
                kind,
                "restore",
                back.strategy,
                run,
                sample,
                self.size,
                None,
                back.bytes_through_manager,
                "sha256 equal" if ok else "SHA256 DIFFERS",
            )
        )
        self.progress(f"{kind} restore (run {run + 1})", sample)

    def offload_vs_stream(self, volume: Path) -> None:
        """(3): remote offload vs FileDriver snapshot-stream, same volume, same kind of store."""
        target_dir = self.root / "target"
        target_dir.mkdir()
        os.link(volume, target_dir / "vol")  # the same file (and page cache), no copy
        with running_target(target_dir) as url:
            pid = find_process("pieceworks.drivers.remote_target", str(target_dir))
            for run in range(self.repeat):
                for kind in self.offload_stores:
                    order = ("offload", "snapshot-stream")
                    chunks: dict[str, list[str]] = {}
                    for strategy in order if run % 2 == 0 else order[::-1]:
                        row, digests = self.offload_once(kind, strategy, run, url, target_dir, pid)
                        chunks[strategy] = digests
                        self.offload_rows.append(row)
                        self.progress(f"{kind} {strategy} (run {run + 1})", row.sample)
                    same = chunks["offload"] == chunks["snapshot-stream"]
                    for row in self.offload_rows[-2:]:
                        row.same_chunks = same

    def offload_once(
        self, kind: str, strategy: str, run: int, url: str, target_dir: Path, pid: int
    ) -> tuple[OffloadRow, list[str]]:
        store = self.open_store(kind, "off" if strategy == "offload" else "ss")
        driver: RemoteDriver | FileDriver
        driver = RemoteDriver(url) if strategy == "offload" else FileDriver(target_dir)
        backend = Backend.of("remote" if strategy == "offload" else "local", driver)
        request = BackupRequest("vol", in_use=True, strategies=(strategy,))
        out: BackupOutcome
        out, sample = measure(partial(backup, backend, store, request), [pid])
        assert out.strategy == strategy, out.plan.format_text()
        digests = [c.digest for c in read_manifest(store.objects, out.backup_id).chunks]
        wire = driver.wire_bytes if isinstance(driver, RemoteDriver) else None
        row = OffloadRow(
            kind,
            strategy,
            run,
            sample,
            self.size,
            out.bytes_stored,
            out.bytes_through_manager,
            wire,
        )
        return row, digests

    @staticmethod
    def progress(what: str, sample: Sample) -> None:
        print(f"  done: {what} in {sample.seconds:.1f} s", file=sys.stderr, flush=True)

    # -- report ----------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        print()
        print(
            f"Stores: {self.size // MiB} MiB realistic-mix volume ({self.size:,d} bytes),"
            " FileDriver; every read from the page cache; MB/s = 10^6 B/s of volume."
        )
        for note in self.notes:
            print(f"note: {note}")
        print()
        header = [
            "store",
            "operation",
            "strategy",
            "run",
            "seconds",
            "MB/s",
            "mgr CPU s",
            "bytes stored",
            "through manager",
            "check",
        ]
        rows = [
            [
                r.store,
                r.operation,
                r.strategy,
                str(r.run + 1),
                f"{r.sample.seconds:.2f}",
                f"{mbps(r.size, r.sample.seconds):.1f}",
                f"{r.sample.manager_cpu:.2f}",
                f"{r.bytes_stored:,d}" if r.bytes_stored is not None else "-",
                f"{r.through_manager:,d}",
                r.check,
            ]
            for r in self.rows
        ]
        print(format_table(header, rows, left=3))
        print()
        print(self.best_table())
        figures: dict[str, Any] = {
            "size_bytes": self.size,
            "in_use": self.in_use,
            "stores": {},
        }
        for r in sorted(self.rows, key=lambda r: -r.sample.seconds):  # the best one last
            figures["stores"][f"{r.store}_{r.operation}"] = {
                "strategy": r.strategy,
                "seconds": round(r.sample.seconds, 3),
                "mbps": round(mbps(r.size, r.sample.seconds), 1),
                "manager_cpu_s": round(r.sample.manager_cpu, 2),
                "bytes_stored": r.bytes_stored,
                "bytes_through_manager": r.through_manager,
                "ok": r.check != "SHA256 DIFFERS",
            }
        if self.offload_rows:
            figures["offload_vs_snapshot_stream"] = self.report_offload()
        ok = all(r.check != "SHA256 DIFFERS" for r in self.rows) and all(
            r.same_chunks for r in self.offload_rows
        )
        figures["all_checks_ok"] = ok
        return figures

    def best_table(self) -> str:
        """Best of the runs per store and operation, with the ratio to the POSIX store."""

        def best(kind: str, operation: str) -> Row:
            mine = [r for r in self.rows if r.store == kind and r.operation == operation]
            return min(mine, key=lambda r: r.sample.seconds)

        header = [f"best of {self.repeat}", "backup s", "MB/s", "restore s", "MB/s"]
        base = self.stores[0]
        header += [f"backup time vs {base}", f"restore time vs {base}"]
        rows = []
        for kind in self.stores:
            b, r = best(kind, "backup"), best(kind, "restore")
            b0, r0 = best(base, "backup"), best(base, "restore")
            rows.append(
                [
                    kind,
                    f"{b.sample.seconds:.2f}",
                    f"{mbps(b.size, b.sample.seconds):.1f}",
                    f"{r.sample.seconds:.2f}",
                    f"{mbps(r.size, r.sample.seconds):.1f}",
                    f"{b.sample.seconds / b0.sample.seconds:.2f}x",
                    f"{r.sample.seconds / r0.sample.seconds:.2f}x",
                ]
            )
        return format_table(header, rows)

    def report_offload(self) -> dict[str, Any]:
        print()
        print(
            "Offload vs snapshot-stream, volume in use: remote target (RemoteDriver, offload)"
            " vs a FileDriver on the target's own directory (snapshot-stream through this"
            " process); both take a temporary snapshot (a full copy on this filesystem)."
        )
        print(f"Runs alternate the order; {self.repeat} run(s) per strategy and store.")
        print()
        header = [
            "store",
            "strategy",
            "run",
            "seconds",
            "MB/s",
            "mgr CPU s",
            "target CPU s",
            "through manager",
            "mgr wire bytes",
            "bytes stored",
            "same chunks",
        ]
        rows = [
            [
                r.store,
                r.strategy,
                str(r.run + 1),
                f"{r.sample.seconds:.2f}",
                f"{mbps(r.size, r.sample.seconds):.1f}",
                f"{r.sample.manager_cpu:.2f}",
                f"{r.sample.others_cpu:.2f}",
                f"{r.through_manager:,d}",
                f"{r.wire_bytes:,d}" if r.wire_bytes is not None else "-",
                f"{r.bytes_stored:,d}",
                "yes" if r.same_chunks else "NO",
            ]
            for r in self.offload_rows
        ]
        print(format_table(header, rows, left=2))
        print()
        out: dict[str, Any] = {}
        for kind in self.offload_stores:

            def best(strategy: str, kind: str = kind) -> OffloadRow:
                mine = [r for r in self.offload_rows if r.store == kind and r.strategy == strategy]
                return min(mine, key=lambda r: r.sample.seconds)

            off, ss = best("offload"), best("snapshot-stream")
            time_ratio = off.sample.seconds / ss.sample.seconds
            cpu_ratio = ss.sample.manager_cpu / max(off.sample.manager_cpu, 1e-9)
            print(
                f"{kind}: offload takes {time_ratio:.2f}x the time of snapshot-stream (best of"
                f" {self.repeat}); the manager spends {off.sample.manager_cpu:.2f} CPU s instead of"
                f" {ss.sample.manager_cpu:.2f} ({cpu_ratio:.0f}x less) and moves"
                f" {off.wire_bytes or 0:,d} wire bytes instead of {ss.through_manager:,d}"
                " volume bytes"
            )
            out[kind] = {
                strategy: {
                    "seconds": round(r.sample.seconds, 3),
                    "mbps": round(mbps(r.size, r.sample.seconds), 1),
                    "manager_cpu_s": round(r.sample.manager_cpu, 2),
                    "target_cpu_s": round(r.sample.others_cpu, 2),
                    "bytes_through_manager": r.through_manager,
                    "wire_bytes": r.wire_bytes,
                    "bytes_stored": r.bytes_stored,
                }
                for strategy, r in (("offload", off), ("snapshot_stream", ss))
            }
            out[kind]["time_ratio_offload_vs_stream"] = round(time_ratio, 3)
            out[kind]["manager_cpu_ratio_stream_vs_offload"] = round(cpu_ratio, 1)
        return out


def _kinds(value: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    kinds = tuple(k for k in value.split(",") if k)
    unknown = [k for k in kinds if k not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown store kind(s) {unknown}: use {allowed}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="volume size (default 1024)")
    parser.add_argument("--dir", help="work directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--in-use",
        action="store_true",
        help="section (1): back up by snapshot-stream (default: not in use, direct-stream)",
    )
    parser.add_argument(
        "--stores",
        type=lambda v: _kinds(v, STORE_KINDS),
        default=STORE_KINDS,
        help="stores for (1)/(2), comma-separated (default posix,swift,s3)",
    )
    parser.add_argument(
        "--offload-stores",
        type=lambda v: _kinds(v, ("posix", "swift")),
        default=("posix", "swift"),
        help="stores for (3), comma-separated, empty to skip (default posix,swift)",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each backup in (3), alternated (default 2)"
    )
    args = parser.parse_args(argv)
    with work_dir(args.dir, args.keep, "pieceworks-bench-stores-") as root:
        bench = Bench(
            root, args.size_mib, args.stores, args.offload_stores, args.in_use, max(1, args.repeat)
        )
        bench.run()
        figures = bench.report()
    print(json.dumps(figures, sort_keys=True))
    return 0 if figures["all_checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
