#!/usr/bin/env python3
"""Throughput of SwiftStore and S3Store against a running Swift (loopback).

Start a server first (``scripts/swift/run_swift.py --info-file swift.json``),
then, from the repository root::

    .venv/bin/python scripts/swift/bench_stores.py swift.json [--big-mib 256] [--small 60]

Measures, for each store: put and get of one `--big-mib` MiB object (a Static
Large Object / multipart upload at the stores' default 64 MiB threshold), and
the rate of 4 MiB puts with 2 threads (`--small` objects). Random data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pieceworks.drivers.s3_store import S3Store
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import ObjectStore

MiB = 1 << 20


def open_stores(info: dict[str, str]) -> dict[str, ObjectStore]:
    """One store per API, each on a new container / bucket."""
    name = f"bench-{uuid.uuid4().hex[:12]}"
    return {
        "swift": SwiftStore(info["auth_url"], info["user"], info["key"], name),
        "s3": S3Store(
            info["s3_endpoint"], info["s3_access_key"], info["s3_secret_key"], name + "-s3"
        ),
    }


def main() -> int:
    """Run the measurements and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("info", type=Path, help="connection info JSON from run_swift.py")
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--small", type=int, default=60, help="4 MiB objects per store")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    info = json.loads(args.info.read_text())
    big = os.urandom(args.big_mib * MiB)
    small = [os.urandom(4 * MiB) for _ in range(8)]
    for api, store in open_stores(info).items():
        start = time.perf_counter()
        store.put("big", big)
        put_s = time.perf_counter() - start
        start = time.perf_counter()
        back = store.get("big")
        get_s = time.perf_counter() - start
        assert back == big
        del back
        store.delete("big")
        mib = len(big) / MiB
        print(f"{api:5} put {mib:.0f} MiB: {mib / put_s:6.1f} MiB/s ({put_s:.2f} s)")
        print(f"{api:5} get {mib:.0f} MiB: {mib / get_s:6.1f} MiB/s ({get_s:.2f} s)")
        start = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(
                pool.map(
                    lambda i, store=store: store.put(f"chunks/{i:06d}", small[i % len(small)]),
                    range(args.small),
                )
            )
        elapsed = time.perf_counter() - start
        print(
            f"{api:5} 4 MiB puts, {args.threads} threads: {args.small / elapsed:6.1f} objects/s"
            f" ({args.small * 4 / elapsed:.1f} MiB/s)"
        )
        for i in range(args.small):
            store.delete(f"chunks/{i:06d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
