"""``pieceworks conductor``: claim and run posted jobs with this host's backends and stores."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.masking import url_password
from pieceworks.cli.options import (
    broker_url,
    exchange_option,
    jobs_location_options,
    metrics_options,
    non_negative_count,
    positive_seconds,
)
from pieceworks.protocols import ConfigError, PieceworksError

if TYPE_CHECKING:
    from pieceworks.cli.config import Config
    from pieceworks.cli.context import Context
    from pieceworks.cli.masking import Masker
    from pieceworks.cli.options import CommandParser

__all__ = ["add_arguments", "jobs_locations", "resolver", "run_conductor_command"]

DESCRIPTION = """\
Run a TaskFlow conductor: claim jobs from the jobboard, one at a time, and run
them with their state in the shared persistence backend. Only jobs whose
backends and stores this host's configuration has (and, with --backends,
only those backends) are claimed; others are left for another conductor.
A killed conductor's claim expires after --claim-expiry seconds and another
resumes its job. One --name per live conductor: a conductor started under
the name of a live one exits 2 (a restart after a crash is not refused).
SIGTERM or Ctrl-C: the running job stops after its current step and is
handed over at once. With --transport (or [jobs] transport),
each data step (a backup's transfer, a restore's write) runs on a
`pieceworks worker` serving the job's backend when one answers within
--worker-wait seconds,
else in this process."""


def add_arguments(parser: CommandParser) -> None:
    """The options of ``conductor``: where jobs live, which to serve, how to report."""
    parser.describe(DESCRIPTION, (ExitCode.FAILED, ExitCode.NOT_FOUND))
    jobs_location_options(parser)
    parser.add_argument(
        "--name",
        help="this conductor's name (default: conductor-HOST-PID); its claims go by it plus"
        " host, pid and a run token, so a restart resumes a killed run's jobs and a live"
        " namesake's claims are never taken for its own",
    )
    parser.add_argument(
        "--backends", metavar="NAME[,NAME]", help="serve only these backends (default: all)"
    )
    parser.add_argument("--engine", choices=("serial", "parallel"), default="serial")
    from pieceworks.execution.timings import (  # noqa: PLC0415 (light: the dispatcher's defaults)
        FIND_TIMEOUT,
        LOST_AFTER,
        QUEUE_TIMEOUT,
    )

    parser.add_argument(
        "--max-dispatches",
        type=non_negative_count,
        metavar="N",
        help="stop after N jobs (0: none, exit at once; default: never)",
    )
    parser.add_argument(
        "--wait-timeout",
        type=positive_seconds,
        default=0.5,
        metavar="S",
        help="seconds between board polls (default: 0.5)",
    )
    parser.add_argument(
        "--claim-expiry",
        type=positive_seconds,
        metavar="S",
        help="seconds a dead conductor's claim survives (default: [jobs] claim_expiry, else 30)",
    )
    exchange_option(parser)
    parser.add_argument(
        "--events", metavar="FILE", type=_events_path, help="append JSON-lines events to FILE"
    )
    parser.add_argument(
        "--worker-wait",
        type=positive_seconds,
        default=FIND_TIMEOUT,
        metavar="S",
        help="seconds to wait for a worker of a step's backend to answer (default: %(default)g)",
    )
    parser.add_argument(
        "--worker-lost-after",
        type=positive_seconds,
        default=LOST_AFTER,
        metavar="S",
        help="seconds without a heartbeat after which a running worker is lost"
        " (default: %(default)g)",
    )
    parser.add_argument(
        "--worker-queue-timeout",
        type=positive_seconds,
        default=QUEUE_TIMEOUT,
        metavar="S",
        help="seconds a step sent to a worker may wait there before it starts; then the"
        " conductor runs it itself (a busy worker, or one that died with the step still"
        " queued) (default: %(default)g)",
    )
    parser.add_argument(
        "--transport",
        metavar="URL",
        type=broker_url,
        help="run data steps on workers: amqp://USER:PASS@HOST/ (default: [jobs] transport)",
    )
    metrics_options(parser)


#: Where a jobs command's persistence URL comes from, for the message of an unusable one.
PERSISTENCE_ORIGIN = "persistence (--persistence or [jobs] persistence)"


def jobs_locations(args: argparse.Namespace, config: Config) -> tuple[str, str]:
    """The jobboard and persistence URLs: the options, else ``[jobs]``; `ConfigError` if none."""
    jobboard = getattr(args, "jobboard", None) or config.jobs.jobboard
    persistence = getattr(args, "persistence", None) or config.jobs.persistence
    if not jobboard:
        raise ConfigError("no jobboard: give --jobboard redis://... or set [jobs] jobboard")
    if not persistence:
        raise ConfigError("no persistence: give --persistence URL or set [jobs] persistence")
    return jobboard, persistence


def reachable_jobs_locations(args: argparse.Namespace, config: Config) -> tuple[str, str]:
    """`jobs_locations`, each checked before any work (the jobs commands and the conductor).

    A jobboard URL that is not ``redis://`` or a persistence URL TaskFlow has
    no driver for is a configuration error (exit 2); a server that cannot
    be reached fails (exit 1) naming it. Both were unexpected errors.
    """
    from pieceworks.cli.context import check_persistence  # noqa: PLC0415
    from pieceworks.execution.board import check_board, jobboard_conf  # noqa: PLC0415

    jobboard, persistence = jobs_locations(args, config)
    check_board(jobboard_conf(jobboard))
    check_persistence(persistence, PERSISTENCE_ORIGIN)
    return jobboard, persistence


def resolver(
    config: Config, env: Mapping[str, str] | None = None, masker: Masker | None = None
) -> Any:
    """The host's configuration as a job flow factory's `resolve` (kind, name → description).

    A store's description has ``password_file``: its section's, else
    ``$PIECEWORKS_PASSWORD_FILE`` of `env` (the file's path only; whoever
    opens an encrypted store reads it). The passphrase itself is never
    taken from the environment here (a child process would inherit it).
    When the file can be read, its passphrase is added to `masker`, so that
    no log line or persisted failure text shows it.
    """
    from pieceworks.cli.passwords import PASSWORD_FILE_ENV  # noqa: PLC0415
    from pieceworks.common_algorithms.keys import passphrase_from_file  # noqa: PLC0415

    env = env or {}
    masked: set[str] = set()

    def resolve(kind: str, name: str) -> Mapping[str, Any]:
        section = config.backend(name) if kind == "backend" else config.store(name)
        found: dict[str, Any] = {
            "name": section.name,
            "driver": section.driver,
            "options": dict(section.options),
            "origin": section.origin,
        }
        if kind == "store":
            password_file = section.password_file or env.get(PASSWORD_FILE_ENV)
            if password_file:
                found["password_file"] = password_file
                if masker is not None and password_file not in masked:
                    with contextlib.suppress(PieceworksError):
                        masker.add(frozenset({passphrase_from_file(password_file)}))
                        masked.add(password_file)
        return found

    return resolve


def run_conductor_command(args: argparse.Namespace, ctx: Context) -> int:
    """Run a conductor until SIGTERM/Ctrl-C or --max-dispatches jobs; exit 0."""
    from pieceworks.execution.board import jobboard_conf  # noqa: PLC0415
    from pieceworks.execution.conductor import event_writer, run_conductor  # noqa: PLC0415
    from pieceworks.execution.dispatch import WorkerDispatcher  # noqa: PLC0415
    from pieceworks.execution.metrics import ConductorMetrics  # noqa: PLC0415

    config = ctx.config
    jobboard, persistence = reachable_jobs_locations(args, config)
    conf = jobboard_conf(jobboard)
    expiry = args.claim_expiry or config.jobs.claim_expiry
    if expiry is not None:
        conf["claim_expiry"] = expiry
    serve = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    for name in serve or ():
        config.backend(name)  # an unknown name is an error at once, not a silent idle
    name = args.name or f"conductor-{socket.gethostname()}-{os.getpid()}"
    with contextlib.ExitStack() as stack:
        events = None
        if args.events:
            events = event_writer(stack.enter_context(_events_file(args.events)))
        metrics = None
        if args.metrics_port is not None:
            metrics = ConductorMetrics()
            port = metrics.serve(args.metrics_port, args.metrics_addr)
            ctx.out.note(f"metrics on http://{args.metrics_addr}:{port}/metrics")
            if events is not None:
                events({"event": "metrics", "port": port, "conductor": name})
        dispatcher = None
        transport = args.transport or config.jobs.transport
        if transport:
            if (password := url_password(transport)) is not None:
                ctx.out.masker.add({password})
            sink = events
            dispatcher = WorkerDispatcher(
                transport,
                exchange=args.exchange,
                find_timeout=args.worker_wait,
                lost_after=args.worker_lost_after,
                transition_timeout=args.worker_queue_timeout,
                on_event=None if sink is None else (lambda e: sink({**e, "conductor": name})),
            )
        run_conductor(
            name,
            conf,
            persistence,
            max_dispatches=args.max_dispatches,
            engine=args.engine,
            wait_timeout=args.wait_timeout,
            events=events,
            stop_on_signals=(signal.SIGTERM, signal.SIGINT),
            resolve=resolver(config, ctx.env, ctx.out.masker),
            serve=serve,
            mask=ctx.out.masker.text,
            keep_finished=config.jobs.keep_finished,
            metrics=metrics,
            dispatcher=dispatcher,
        )
    return ExitCode.OK


def _events_path(text: str) -> str:
    """``--events FILE`` as parsed: ``-`` (the usual name of standard output) made a file
    called '-'; it is a usage error before anything is reached."""
    if text == "-":
        raise argparse.ArgumentTypeError(
            "'-' is not a file; for standard output give /dev/stdout (./- for a file called '-')"
        )
    return text


def _events_file(path: str) -> IO[str]:
    """``--events FILE`` opened to append; a usage error naming the file and why if it cannot be."""
    from pieceworks.protocols.os_errors import os_reason  # noqa: PLC0415

    try:
        return open(path, "a", encoding="utf-8")  # closed by the caller's exit stack
    except OSError as exc:
        raise CliError(
            f"--events {path}: cannot open it to append events: {os_reason(exc, path)}",
            ExitCode.USAGE,
        ) from None
