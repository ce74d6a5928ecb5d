"""Running a remote target: `make_server`, `serve` and the command line `main`.

Run it::

    python -m pieceworks.drivers.remote.server --dir /srv/volumes --port 8470 \\
        [--host 127.0.0.1] [--token TOKEN | --token-file FILE]

(``python -m pieceworks.drivers.remote_target`` and ``pieceworks target
serve`` are the same.) ``--port 0`` picks a free port; the first line on
stdout is always ``listening on http://HOST:PORT``, so that a parent
process can read it. Logs go to stderr. `serve` is the same as a function
and `make_server` gives the server object without running it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from pieceworks.drivers.remote.http import (
    TargetServer,
)
from pieceworks.drivers.remote.protocol import (
    FIRST_WAIT_SECONDS,
    HEARTBEAT_SECONDS,
)
from pieceworks.drivers.remote.service import (
    TargetService,
)
from pieceworks.protocols import (
    PieceworksError,
)

log = logging.getLogger(__name__)


def make_server(
    directory: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    *,
    max_jobs: int = 4,
    threads: int = 2,
    answer_within: float = FIRST_WAIT_SECONDS,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> TargetServer:
    """A bound (not yet serving) target server; port 0 picks a free port.

    The keyword options are those of `TargetService`.
    """
    service = TargetService(
        directory,
        token,
        max_jobs=max_jobs,
        threads=threads,
        answer_within=answer_within,
        heartbeat=heartbeat,
    )
    if not token and host not in {"127.0.0.1", "::1", "localhost"}:
        log.warning("serving on %s without a token: anyone who reaches it can use it", host)
    return TargetServer((host, port), service)


def serve(
    directory: str | os.PathLike[str],
    host: str,
    port: int,
    token: str | None,
    ready: Callable[[int], None] | None = None,
    *,
    max_jobs: int = 4,
    threads: int = 2,
    answer_within: float = FIRST_WAIT_SECONDS,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> None:
    """Serve the target until interrupted (Ctrl-C, or SIGTERM in the main thread).

    `ready` is called with the bound port once requests are accepted. The
    keyword options are those of `TargetService`.
    """
    server = make_server(
        directory,
        host,
        port,
        token,
        max_jobs=max_jobs,
        threads=threads,
        answer_within=answer_within,
        heartbeat=heartbeat,
    )
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    with server:
        if in_main:
            previous = signal.signal(signal.SIGTERM, stop)
        try:
            log.info("serving volumes in %s on %s", server.service.driver.root, server.url)
            if ready is not None:
                ready(server.server_port)
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            return f.read().strip() or None
    return args.token or os.environ.get("PIECEWORKS_TARGET_TOKEN") or None


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m pieceworks.drivers.remote.server"
) -> int:
    """``python -m pieceworks.drivers.remote.server`` (or ``pieceworks target serve``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a directory of volumes to a pieceworks manager (remote driver).",
    )
    parser.add_argument("--dir", required=True, help="directory of volumes (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    parser.add_argument(
        "--token", help="bearer token the manager must send (or PIECEWORKS_TARGET_TOKEN)"
    )
    parser.add_argument("--token-file", help="read the token from this file")
    parser.add_argument(
        "--max-jobs", type=int, default=4, help="pushes, pulls, replications and receives at once"
    )
    parser.add_argument("--threads", type=int, default=2, help="worker threads per push or pull")
    parser.add_argument(
        "--answer-within",
        type=float,
        default=FIRST_WAIT_SECONDS,
        help="seconds before a long operation is answered as a progress stream",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT_SECONDS,
        help="seconds between progress lines while a long operation runs",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        os.makedirs(args.dir, mode=0o700, exist_ok=True)
        token = _token(args)

        def ready(port: int) -> None:
            print(f"listening on http://{args.host}:{port}", flush=True)

        serve(
            args.dir,
            args.host,
            args.port,
            token,
            ready,
            max_jobs=args.max_jobs,
            threads=args.threads,
            answer_within=args.answer_within,
            heartbeat=args.heartbeat,
        )
    except (PieceworksError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
