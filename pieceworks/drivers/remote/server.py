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
import errno
import logging
import math
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


TOKEN_FILE_LIMIT = 64 * 1024
"""The most bytes a ``--token-file`` may hold (64 KiB)."""


class _StartError(Exception):
    """The target cannot start; the message names the option and the reason."""


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token: --token-file (which must hold one), --token, or the environment."""
    if args.token_file:
        try:
            with open(args.token_file, "rb") as f:  # bounded: /dev/zero must not fill memory
                data = f.read(TOKEN_FILE_LIMIT + 1)
            if len(data) > TOKEN_FILE_LIMIT:
                raise _StartError(
                    f"--token-file {args.token_file} is larger than"
                    f" {TOKEN_FILE_LIMIT // 1024} KiB: not a token file"
                )
            token = data.decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise _StartError(f"cannot read --token-file {args.token_file}: {reason}") from None
        if not token:  # serving without the token asked for would let anyone in
            raise _StartError(f"--token-file {args.token_file} is empty")
        return token
    return args.token or os.environ.get("PIECEWORKS_TARGET_TOKEN") or None


def _port(text: str) -> int:
    """``--port``: 0 (a free one) to 65535 (else the bind raised ``OverflowError``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: a whole number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} out of range: use 0 (a free one) to 65535")
    return value


def _number(minimum: float, *, whole: bool = False, above: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite number >= `minimum` (> with `above`), an int if `whole`."""

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            bound = f"more than {minimum:g}" if above else f"at least {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number {bound}")
        return value

    return parse


def _not_blank(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty or blank")
    return text


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m pieceworks.drivers.remote.server"
) -> int:
    """``python -m pieceworks.drivers.remote.server`` (or ``pieceworks target serve``).

    A bad option exits 2 with argparse's message; a target that cannot start
    (a --dir that is not a directory, a token file unreadable or empty, an
    address that cannot be bound) exits 2 with one line ``PROG: error: ...``.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a directory of volumes to a pieceworks manager (remote driver).",
    )
    parser.add_argument(
        "--dir", required=True, type=_not_blank, help="directory of volumes (created if missing)"
    )
    parser.add_argument("--host", default="127.0.0.1", type=_not_blank, help="address to listen on")
    parser.add_argument("--port", type=_port, default=0, help="port (0: pick a free one)")
    parser.add_argument(
        "--token", help="bearer token the manager must send (or PIECEWORKS_TARGET_TOKEN)"
    )
    parser.add_argument("--token-file", type=_not_blank, help="read the token from this file")
    parser.add_argument(
        "--max-jobs",
        type=_number(1, whole=True),
        default=4,
        help="pushes, pulls, replications and receives at once",
    )
    parser.add_argument(
        "--threads", type=_number(1, whole=True), default=2, help="worker threads per push or pull"
    )
    parser.add_argument(
        "--answer-within",
        type=_number(0),
        default=FIRST_WAIT_SECONDS,
        help="seconds before a long operation is answered as a progress stream",
    )
    parser.add_argument(
        "--heartbeat",
        type=_number(0, above=True),
        default=HEARTBEAT_SECONDS,
        help="seconds between progress lines while a long operation runs",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    args = parser.parse_args(argv)
    if logging.getLevelName(args.log_level.upper()) not in range(0, 51):
        parser.error(f"argument --log-level: unknown level {args.log_level!r}")
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        token = _token(args)
        try:
            os.makedirs(args.dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            reason = "not a directory" if exc.errno == errno.EEXIST else exc.strerror
            raise _StartError(f"cannot serve --dir {args.dir}: {reason}") from None

        started = []

        def ready(port: int) -> None:
            started.append(port)
            print(f"listening on http://{args.host}:{port}", flush=True)

        try:
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
        except OSError as exc:
            if started:  # not a start-up problem
                raise
            where = f"{args.host}:{args.port}"
            raise _StartError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    except (PieceworksError, _StartError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
