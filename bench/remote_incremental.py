"""What a remote target's later backups read back from Swift: full, then incrementals.

Starts a real single-node Swift on loopback
(`tests.fixtures.swift_server.running_swift`) and a real remote target
process (`tests.support.targets.running_target`) owning a realistic-mix
volume (`stores.make_volume`: 4 MiB blocks of random, zeros, random and
log-like text), then, for each of ``--rounds`` fresh Swift containers, backs
the volume up through `RemoteDriver` (offload: the target writes to Swift
itself):

  (1) full: the first backup;
  (2) incremental, nothing changed;
  (3) incremental after ``--change-percent`` of the blocks were rewritten.

For each it reports the wall time, the target's CPU seconds (``/proc``), and
what Swift's proxy logged for the chunk objects (its access log, so the
count does not depend on the code under test): GETs and the bytes they
returned, HEADs, container listings; and the bytes the backup stored. A
table, then one JSON line with the figures.

    .venv/bin/python bench/remote_incremental.py --size-mib 256

Run the same file in a checkout of another commit to compare (it needs only
what the target and the manager had before incremental-offload).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backup_throughput import BLOCK, MiB
from stores import find_process, make_volume, process_cpu_seconds

from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup, verify
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import StoreSpec
from tests.fixtures.swift_server import SwiftServer, running_swift
from tests.support.targets import running_target


@dataclass
class Row:
    """One backup: what it cost and what Swift served for it."""

    round: int
    step: str
    seconds: float
    target_cpu_seconds: float
    chunk_gets: int
    chunk_get_bytes: int
    chunk_heads: int
    listings: int
    bytes_stored: int


class ProxyLog:
    """Swift proxy access lines logged since the last `take` (client requests only)."""

    def __init__(self, server: SwiftServer) -> None:
        self.path = server.log_path("proxy")
        self.position = self.path.stat().st_size

    def take(self) -> list[list[str]]:
        """Fields of each client request line logged since the last call.

        A line: ``proxy-server: client remote date METHOD path protocol
        status referer agent token bytes_received bytes_sent ...``; Swift's
        own sub-requests have ``-`` for a client and are left out.
        """
        with open(self.path, "rb") as f:
            f.seek(self.position)
            text = f.read().decode(errors="replace")
            self.position = f.tell()
        lines = [line.split() for line in text.splitlines() if line.startswith("proxy-server: ")]
        return [f for f in lines if len(f) > 12 and f[1] != "-"]


def counts(lines: list[list[str]]) -> dict[str, int]:
    """GETs of chunk objects and their bytes, HEADs of chunk objects, container listings."""
    out = {"chunk_gets": 0, "chunk_get_bytes": 0, "chunk_heads": 0, "listings": 0}
    for f in lines:
        method, path, status, sent = f[4], f[5], f[7], f[12]
        if "/chunks/" in path.split("?")[0]:
            if method == "GET":
                out["chunk_gets"] += 1
                out["chunk_get_bytes"] += int(sent) if status == "200" and sent != "-" else 0
            elif method == "HEAD":
                out["chunk_heads"] += 1
        elif method == "GET" and path.count("/") == 3:  # /v1/AUTH_x/container[?query]
            out["listings"] += 1
    return out


def change_blocks(path: Path, percent: float, seed: int) -> int:
    """Rewrite the first bytes of `percent` of the volume's 4 MiB blocks; return how many."""
    blocks = path.stat().st_size // BLOCK
    rng = random.Random(seed)
    chosen = rng.sample(range(blocks), max(1, round(blocks * percent / 100)))
    with open(path, "r+b") as f:
        for index in chosen:
            os.pwrite(f.fileno(), rng.randbytes(4096), index * BLOCK)
    return len(chosen)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="fresh containers, one after another")
    parser.add_argument("--change-percent", type=float, default=1.0)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pieceworks-bench-remote-"))
    rows: list[Row] = []
    try:
        target_dir = root / "volumes"
        target_dir.mkdir()
        size = make_volume(target_dir / "vol", args.size_mib)
        with running_swift() as server, running_target(target_dir) as url:
            pid = find_process("pieceworks.drivers.remote_target", str(target_dir))
            backend = Backend.of("far", RemoteDriver(url))
            proxy = ProxyLog(server)
            for round_ in range(args.rounds):
                container = f"bench-{uuid.uuid4().hex[:8]}"
                options = server.swift_options(container)
                store = Store("swift", SwiftStore(**options), StoreSpec("swift", "swift", options))
                if round_:  # the same volume each round: undo the last round's change
                    make_volume(target_dir / "vol", args.size_mib)
                steps = ("full", "incremental, unchanged", "incremental, changed")
                for name in steps:
                    step = name
                    if name == "incremental, changed":
                        changed = change_blocks(target_dir / "vol", args.change_percent, round_)
                        step = f"incremental, {changed} blocks changed"
                    request = BackupRequest("vol", incremental=name != "full")
                    proxy.take()
                    cpu, started = process_cpu_seconds(pid), time.perf_counter()
                    out = backup(backend, store, request)
                    seconds = time.perf_counter() - started
                    cpu = process_cpu_seconds(pid) - cpu
                    assert out.strategy == "offload", out
                    rows.append(
                        Row(
                            round_,
                            step,
                            round(seconds, 3),
                            round(cpu, 2),
                            **counts(proxy.take()),
                            bytes_stored=out.bytes_stored,
                        )
                    )
                    assert verify(store, out.backup_id).ok
                    proxy.take()  # verify's reads are not the backup's
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"volume {size // MiB} MiB, 4 MiB chunks, zstd; Swift on loopback, target process")
    head = (
        f"{'round':>5}  {'backup':<28} {'seconds':>8} {'tgt CPU s':>9} {'chunk GETs':>10}"
        f" {'GET MiB':>8} {'HEADs':>6} {'listings':>8} {'stored MiB':>10}"
    )
    print(head)
    for r in rows:
        print(
            f"{r.round:>5}  {r.step:<28} {r.seconds:>8.3f} {r.target_cpu_seconds:>9.2f}"
            f" {r.chunk_gets:>10} {r.chunk_get_bytes / MiB:>8.1f} {r.chunk_heads:>6}"
            f" {r.listings:>8} {r.bytes_stored / MiB:>10.1f}"
        )
    print(json.dumps({"size": size, "rows": [asdict(r) for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
