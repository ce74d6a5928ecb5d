#!/usr/bin/env python3
"""Start the tests' single-node Swift (with its S3 API) by hand, e.g. for benchmarks.

Run it with the project's interpreter from the repository root::

    .venv/bin/python scripts/swift/run_swift.py [--info-file swift.json] [--workdir DIR]

It installs Swift into its own virtualenv on first use (see
``tests/fixtures/swift_server.py``), starts the four servers, prints the
connection info as JSON and as ``pieceworks`` store sections, and runs until
interrupted (Ctrl-C or SIGTERM), then stops the servers and removes the
temporary directory (unless ``--workdir`` or ``--keep`` was given).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fixtures.swift_server import running_swift


def main(argv: list[str] | None = None) -> int:
    """Start Swift, print how to reach it, and wait for a signal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="Swift virtualenv (default: the cache dir)")
    parser.add_argument("--workdir", type=Path, help="config/data directory (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--info-file", type=Path, help="also write the connection info here")
    parser.add_argument("--timeout", type=float, default=60.0, help="start timeout (s)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with running_swift(args.venv, args.workdir, args.timeout, args.keep) as server:
        info = server.connection_info()
        if args.info_file:
            args.info_file.write_text(json.dumps(info, indent=2) + "\n")
        print(f"swift started in {time.monotonic() - started:.1f} s", flush=True)
        print(json.dumps(info, indent=2))
        print(
            f"""
[stores.swift]
driver = "swift"
auth_url = "{info["auth_url"]}"
user = "{info["user"]}"
key = "{info["key"]}"
container = "pieceworks"

[stores.s3]
driver = "s3"
endpoint_url = "{info["s3_endpoint"]}"
access_key = "{info["s3_access_key"]}"
secret_key = "{info["s3_secret_key"]}"
bucket = "pieceworks"
region = "{info["region"]}"
""",
            flush=True,
        )
        print("running; Ctrl-C or SIGTERM stops it", flush=True)
        while not stop.wait(1.0):
            for name, proc in server.procs.items():
                if proc.poll() is not None:
                    print(f"swift {name} server exited\n{server.logs()}", file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
