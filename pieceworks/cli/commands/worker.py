"""``pieceworks worker``: serve the data steps of this host's backends over RabbitMQ."""

from __future__ import annotations

import argparse
import signal
import threading
import types
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.options import broker_url, exchange_option, metrics_options, positive_count

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser

__all__ = ["add_arguments", "run_worker"]

DESCRIPTION = """\
Run a TaskFlow worker (the worker-based engine) next to the data: it serves
the data-moving steps of backups (transfer, push), restores (write, pull)
and replications (copy, when it also has the target backend) for the
backends named by --backends (default: every configured backend), each on
the topic pieceworks.backend.NAME of exchange --exchange of the broker
--transport names (default: [jobs] transport). A conductor started with --transport runs those
steps on a worker of the job's backend, or in process when none answers;
planning, leases and manifests stay in the conductor. Messages carry backend
and store names only: this host's configuration gives the driver options and
credentials. A worker killed mid-step is noticed by the conductor (no
heartbeat for 5 s), which runs the step again elsewhere. A conductor of
another version may send a request field this worker does not know: it is
ignored with a warning, unless the request says it is required (or speaks a
newer request protocol): then the step is refused and the conductor fails
it with incompatible-request, naming the field (docs/scale.md, rolling
upgrades). SIGTERM or Ctrl-C stop the worker."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND)


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``worker``."""
    parser.describe(DESCRIPTION, CODES)
    parser.add_argument(
        "--transport",
        metavar="URL",
        type=broker_url,
        help="the broker, amqp://USER:PASS@HOST/ (default: [jobs] transport)",
    )
    parser.add_argument(
        "--backends", metavar="NAME[,NAME]", help="serve these backends (default: all configured)"
    )
    exchange_option(parser)
    parser.add_argument(
        "--threads",
        type=positive_count,
        default=2,
        metavar="N",
        help="steps run at once, at least 1 (default: 2)",
    )
    metrics_options(parser)


def run_worker(args: argparse.Namespace, ctx: Context) -> int:
    """Serve until SIGTERM/Ctrl-C; exit 0. `ConfigError` (exit 2) for no transport or a bad name."""
    from pieceworks.cli.masking import url_password  # noqa: PLC0415
    from pieceworks.execution.metrics import WorkerMetrics  # noqa: PLC0415
    from pieceworks.execution.worker import serve_backends  # noqa: PLC0415
    from pieceworks.protocols import ConfigError  # noqa: PLC0415

    config = ctx.config
    url = args.transport or config.jobs.transport
    if not url:
        raise ConfigError("no transport: give --transport amqp://... or set [jobs] transport")
    if (password := url_password(url)) is not None:
        ctx.out.masker.add({password})
    # Each name once: "a,a" served backend a twice ("worker ready: serving a, a").
    names = list(dict.fromkeys(b.strip() for b in (args.backends or "").split(",") if b.strip()))
    names = names or sorted(config.backends)
    for name in names:
        ctx.backend(name)  # unknown or unopenable: an error now, not at the first step
    metrics = None
    if args.metrics_port is not None:
        metrics = WorkerMetrics()
        port = metrics.serve(args.metrics_port, args.metrics_addr)
        ctx.out.note(f"metrics on http://{args.metrics_addr}:{port}/metrics")
    stop = threading.Event()

    def on_signal(_signum: int, _frame: types.FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    serve_backends(
        url,
        names,
        ctx,
        stop=stop,
        threads=args.threads,
        metrics=metrics,
        on_ready=lambda: ctx.out.note(f"worker ready: serving {', '.join(names)}"),
        mask=ctx.out.masker.text,
        exchange=args.exchange,
    )
    return ExitCode.OK
