"""``python -m pieceworks.execution conductor --jobboard redis://... --persistence postgresql://...``.

A conductor without a host configuration: it runs only jobs that carry whole
backend and store descriptions (posted by earlier versions) and leaves every
job that names its backend and store to conductors started with
``pieceworks conductor``, which resolve the names from their configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from pieceworks.execution.board import DEFAULT_CLAIM_EXPIRY, jobboard_conf
from pieceworks.execution.conductor import ENGINES, event_writer, run_conductor
from pieceworks.execution.liveness import ConductorNameInUse
from pieceworks.protocols.os_errors import os_reason

__all__ = ["main"]


def _count(text: str) -> int:
    """``--max-dispatches``: a whole number of at least 0, else a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``conductor --jobboard redis://... --persistence postgresql://...``."""
    parser = argparse.ArgumentParser(
        prog="python -m pieceworks.execution",
        description="Run pieceworks jobs from a TaskFlow jobboard.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cond = commands.add_parser("conductor", help="claim and run jobs until stopped")
    cond.add_argument("--jobboard", required=True, help="redis://host:port/namespace")
    cond.add_argument("--persistence", required=True, help="postgresql://user@host/db")
    cond.add_argument("--name", default=f"conductor-{socket.gethostname()}")
    cond.add_argument("--max-dispatches", type=_count, default=None, metavar="N")
    cond.add_argument("--engine", choices=ENGINES, default="serial")
    cond.add_argument("--wait-timeout", type=float, default=0.5)
    cond.add_argument(
        "--claim-expiry",
        type=float,
        default=None,
        help=f"seconds a dead conductor's claim survives (default {DEFAULT_CLAIM_EXPIRY:g})",
    )
    cond.add_argument("--events", default=None, help="append JSON-lines events to this file")
    cond.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # schema checks at every start
    conf = jobboard_conf(args.jobboard)
    if args.claim_expiry is not None:
        conf["claim_expiry"] = args.claim_expiry
    with contextlib.ExitStack() as stack:
        events = None
        if args.events:
            try:
                stream = stack.enter_context(open(args.events, "a", encoding="utf-8"))
            except OSError as exc:
                parser.error(
                    f"argument --events: cannot open {args.events} to append:"
                    f" {os_reason(exc, args.events)}"
                )
            events = event_writer(stream)
        try:
            run_conductor(
                args.name,
                conf,
                args.persistence,
                max_dispatches=args.max_dispatches,
                engine=args.engine,
                wait_timeout=args.wait_timeout,
                events=events,
                stop_on_signals=(signal.SIGTERM, signal.SIGINT),
            )
        except ConductorNameInUse as exc:  # exit 2, as `pieceworks conductor`
            print(f"conductor: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
