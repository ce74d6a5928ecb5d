"""Replicate one volume file->file, file->qcow2 and remote->remote, by every strategy.

Builds the DESIGN.md "realistic mix" volume with `backup_throughput`'s volume
builder (4 MiB blocks, interleaved: random, zeros, random, log-like text;
every block distinct) and, for each pair of backends, runs `replicate()`
with every strategy that the plan finds eligible, each forced with
``ReplicateRequest(strategies=(name,))``, ``--repeat`` times (default 2; the
order of the strategies alternates from one round to the next):

  file -> file      native (FileDriver replicate-to-peer: copy_file_range),
                    stream (through the manager), via-store;
  file -> qcow2     stream, via-store (native: the file driver cannot reach
                    a qcow2 backend, and the plan says why);
  remote -> remote  native (the source target sends to the peer target, if
                    the RemoteDriver provides replicate-to-peer), via-store
                    (the source target pushes, the peer target pulls);
                    stream is ineligible (no stream-out, no stream-in).

The remote backends are two real target processes on loopback
(`tests.support.targets.running_target`), the source volume hard-linked into
the source target's directory. Via-store stages the chunks in a fresh,
durable POSIX store (fsync per object). Each run reports seconds, MB/s
(10^6 bytes of volume per second), the manager's CPU seconds
(``getrusage(RUSAGE_SELF)``), its child tools' CPU seconds (``qemu-img``,
``qemu-nbd``: ``RUSAGE_CHILDREN``), the targets' CPU seconds (``/proc``),
`bytes_through_manager`, the RemoteDrivers' `wire_bytes`, and whether the
target's sha256 equals the source's (read back with `sha256_file` for a
file, through the driver for qcow2, by `RemoteDriver.volume_sha256` for a
remote target; the check is not timed). Reads come from the page cache.

    .venv/bin/python bench/replicate.py --size-mib 1024
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backup_throughput import BLOCK, MiB, sha256_file
from stores import Sample, find_process, format_table, make_volume, measure, work_dir

from pieceworks.common_algorithms import (
    REPLICATE_STRATEGIES,
    Backend,
    ReplicateRequest,
    Store,
    plan_replicate,
    replicate,
)
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.qcow2 import Qcow2Driver
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.protocols import BackendSpec, IReplicateToPeer, StoreSpec, VolumeRef
from tests.support.targets import running_target

PAIRS = (("file", "file"), ("file", "qcow2"), ("remote", "remote"))


@dataclass
class Run:
    """One replication by one forced strategy."""

    pair: str
    strategy: str
    run: int
    sample: Sample
    size: int
    through_manager: int
    wire_bytes: int | None
    sha_ok: bool
    verified: str


@dataclass
class Skipped:
    """A strategy the plan found ineligible for a pair, with its reason."""

    pair: str
    strategy: str
    reason: str


@dataclass
class Bench:
    root: Path
    size_mib: int
    in_use: bool
    repeat: int
    pairs: tuple[tuple[str, str], ...]
    runs: list[Run] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    target_pids: list[int] = field(default_factory=list)
    size: int = 0
    original: str = ""
    stores_made: int = 0

    def run(self) -> None:
        source_dir = self.root / "file-a"
        source_dir.mkdir()
        started = time.perf_counter()
        self.size = make_volume(source_dir / "vol", self.size_mib)
        self.original = sha256_file(source_dir / "vol")
        print(
            f"volume: {self.size // MiB} MiB realistic mix, written and hashed in"
            f" {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        with ExitStack() as stack:
            backends: dict[str, Backend] = {}

            def backend(kind: str, side: str) -> Backend:
                name = f"{kind}-{side}"
                if name in backends:
                    return backends[name]
                path = self.root / name
                path.mkdir(exist_ok=True)
                spec = BackendSpec(name, kind, {"path": str(path)})
                if kind == "file":
                    made = Backend.of(name, FileDriver(path), spec)
                elif kind == "qcow2":
                    made = Backend.of(name, Qcow2Driver(path), spec)
                else:
                    if side == "a":
                        os.link(source_dir / "vol", path / "vol")  # same file, no copy
                    url = stack.enter_context(running_target(path))
                    self.target_pids.append(
                        find_process("pieceworks.drivers.remote_target", str(path))
                    )
                    made = Backend.of(
                        name, RemoteDriver(url), BackendSpec(name, "remote", {"url": url})
                    )
                backends[name] = made
                return made

            for source_kind, target_kind in self.pairs:
                self.replicate_pair(backend(source_kind, "a"), backend(target_kind, "b"))

    def fresh_store(self) -> Store:
        self.stores_made += 1
        path = self.root / "stores" / f"s{self.stores_made}"
        return Store("stage", PosixStore(path), StoreSpec("stage", "posix", {"path": str(path)}))

    def replicate_pair(self, source: Backend, target: Backend) -> None:
        pair = f"{source.name.split('-')[0]}->{target.name.split('-')[0]}"
        if isinstance(source.driver, RemoteDriver):
            provides = IReplicateToPeer.providedBy(source.driver)
            self.notes.append(
                f"{pair}: IReplicateToPeer.providedBy(RemoteDriver) is {provides}"
                + ("" if provides else ": native cannot run")
            )
        probe = self.fresh_store()
        eligible = []
        for name in REPLICATE_STRATEGIES:
            request = ReplicateRequest("vol", in_use=self.in_use, strategies=(name,))
            choice = plan_replicate(source, target, probe, request).strategies[0]
            if choice.eligible:
                eligible.append(name)
            else:
                self.skipped.append(Skipped(pair, name, choice.reason))
        shutil.rmtree(self.root / "stores" / f"s{self.stores_made}", ignore_errors=True)
        for run in range(self.repeat):
            order = eligible if run % 2 == 0 else eligible[::-1]
            for name in order:
                self.runs.append(self.replicate_once(pair, source, target, name, run))

    def replicate_once(
        self, pair: str, source: Backend, target: Backend, strategy: str, run: int
    ) -> Run:
        copy = f"copy-{strategy}-{run}"
        store = self.fresh_store() if strategy == "via-store" else None
        request = ReplicateRequest(
            "vol", target_volume_id=copy, in_use=self.in_use, strategies=(strategy,)
        )
        wire_before = self.wire(source, target)
        out, sample = measure(
            partial(replicate, source, target, request, store=store), self.target_pids
        )
        assert out.strategy == strategy, out.plan.format_text()
        wire = self.wire(source, target)
        ok = self.digest(target, copy) == self.original
        self.remove(target, copy)
        if store is not None:
            shutil.rmtree(self.root / "stores" / f"s{self.stores_made}")
        print(
            f"  done: {pair} {strategy} (run {run + 1}) in {sample.seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        return Run(
            pair,
            strategy,
            run,
            sample,
            self.size,
            out.bytes_through_manager,
            None if wire is None or wire_before is None else wire - wire_before,
            ok,
            out.verified,
        )

    @staticmethod
    def wire(source: Backend, target: Backend) -> int | None:
        counts = [
            b.driver.wire_bytes for b in (source, target) if isinstance(b.driver, RemoteDriver)
        ]
        return sum(counts) if counts else None

    @staticmethod
    def digest(backend: Backend, volume_id: str) -> str:
        driver = backend.driver
        if isinstance(driver, RemoteDriver):
            return driver.volume_sha256(volume_id)
        if isinstance(driver, FileDriver):
            return sha256_file(Path(driver.root) / volume_id)
        assert isinstance(driver, Qcow2Driver)
        h = hashlib.sha256()
        buf = bytearray(BLOCK)
        with closing(driver.open_read(VolumeRef(volume_id))) as reader:
            for offset in range(0, reader.size, BLOCK):
                view = memoryview(buf)[: min(BLOCK, reader.size - offset)]
                n = reader.readinto_at(offset, view)
                h.update(view[:n])
        return h.hexdigest()

    def remove(self, backend: Backend, volume_id: str) -> None:
        driver = backend.driver
        if isinstance(driver, FileDriver | Qcow2Driver):
            driver.delete_volume(volume_id)
        else:  # a remote target is a FileDriver on its directory: remove the file there
            (self.root / backend.name / volume_id).unlink(missing_ok=True)

    # -- report -----------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        print()
        print(
            f"Replicate: {self.size // MiB} MiB realistic-mix volume ({self.size:,d} bytes),"
            f" in_use={self.in_use}; each strategy forced; reads from the page cache;"
            " MB/s = 10^6 B/s of volume."
        )
        for note in self.notes:
            print(f"note: {note}")
        print()
        header = [
            "pair",
            "strategy",
            "run",
            "seconds",
            "MB/s",
            "mgr CPU s",
            "tools CPU s",
            "targets CPU s",
            "through manager",
            "mgr wire bytes",
            "sha256",
        ]
        rows = [
            [
                r.pair,
                r.strategy,
                str(r.run + 1),
                f"{r.sample.seconds:.2f}",
                f"{r.size / r.sample.seconds / 1e6:.1f}",
                f"{r.sample.manager_cpu:.2f}",
                f"{r.sample.children_cpu:.2f}",
                f"{r.sample.others_cpu:.2f}" if "remote" in r.pair else "-",
                f"{r.through_manager:,d}",
                f"{r.wire_bytes:,d}" if r.wire_bytes is not None else "-",
                "equal" if r.sha_ok else "DIFFERS",
            ]
            for r in self.runs
        ]
        print(format_table(header, rows, left=2))
        print()
        for s in self.skipped:
            print(f"not run: {s.pair} {s.strategy}: {s.reason}")
        figures: dict[str, Any] = {"size_bytes": self.size, "in_use": self.in_use, "pairs": {}}
        for r in self.runs:
            best = figures["pairs"].setdefault(r.pair, {}).get(r.strategy)
            if best is not None and best["seconds"] <= r.sample.seconds:
                continue
            figures["pairs"][r.pair][r.strategy] = {
                "seconds": round(r.sample.seconds, 3),
                "mbps": round(r.size / r.sample.seconds / 1e6, 1),
                "manager_cpu_s": round(r.sample.manager_cpu, 2),
                "tools_cpu_s": round(r.sample.children_cpu, 2),
                "targets_cpu_s": round(r.sample.others_cpu, 2) if "remote" in r.pair else None,
                "bytes_through_manager": r.through_manager,
                "wire_bytes": r.wire_bytes,
                "sha256_equal": r.sha_ok,
                "verified": r.verified,
            }
        for s in self.skipped:
            figures["pairs"].setdefault(s.pair, {})[s.strategy] = {"ineligible": s.reason}
        figures["all_sha256_equal"] = all(r.sha_ok for r in self.runs)
        return figures


def _pairs(value: str) -> tuple[tuple[str, str], ...]:
    known = {f"{a}->{b}": (a, b) for a, b in PAIRS}
    names = [v for v in value.split(",") if v]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown pair(s) {unknown}: use {sorted(known)}")
    return tuple(known[n] for n in names)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="volume size (default 1024)")
    parser.add_argument("--dir", help="work directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--in-use", action="store_true", help="replicate from a temporary snapshot (in use)"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each strategy, order alternated (default 2)"
    )
    parser.add_argument(
        "--pairs",
        type=_pairs,
        default=PAIRS,
        help="comma-separated, default file->file,file->qcow2,remote->remote",
    )
    args = parser.parse_args(argv)
    with work_dir(args.dir, args.keep, "pieceworks-bench-replicate-") as root:
        bench = Bench(root, args.size_mib, args.in_use, max(1, args.repeat), args.pairs)
        bench.run()
        figures = bench.report()
    print(json.dumps(figures, sort_keys=True))
    return 0 if figures["all_sha256_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
