"""``pieceworks target serve``: run a storage target for the remote driver.

The service is found as an entry point (namespace ``pieceworks.services``,
name ``remote-target``) like any driver, so the command stays independent of
the driver's code; the options after ``serve`` are the service's own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from pieceworks.cli.options import port_number, positive_count

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser

__all__ = ["SERVICES_NAMESPACE", "add_arguments", "run_serve"]

SERVICES_NAMESPACE = "pieceworks.services"

SERVE_DESCRIPTION = """\
Own the volumes in --dir and serve them to pieceworks managers (driver
'remote', option url). The target snapshots, pushes to and pulls from stores
itself and replicates to peer targets: no volume byte crosses the manager.
Prints 'listening on http://HOST:PORT' once ready (--port 0 picks a free
port). The token comes from --token-file or $PIECEWORKS_TARGET_TOKEN.
Runs until Ctrl-C or SIGTERM."""


def add_arguments(parser: CommandParser) -> None:
    """``target`` and its one action, ``serve``, with the service's options."""
    parser.describe(
        "Storage target commands: `pieceworks target serve --dir DIR`.", needs_config=False
    )
    actions = parser.add_commands("target_command")
    serve = actions.add(
        "serve",
        "run_serve",
        summary="serve a directory of volumes on HTTP",
        description=SERVE_DESCRIPTION,
        needs_config=False,
    )
    serve.add_argument(
        "--dir",
        required=True,
        type=_not_blank,
        metavar="DIR",
        help="directory of volumes (created if missing)",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", type=_not_blank, metavar="HOST", help="address to listen on"
    )
    serve.add_argument(
        "--port", type=port_number, default=0, metavar="PORT", help="port (0: pick a free one)"
    )
    serve.add_argument(
        "--token-file", type=_not_blank, metavar="FILE", help="read the bearer token from this file"
    )
    serve.add_argument(
        "--max-jobs",
        type=positive_count,
        default=4,
        metavar="N",
        help="operations at once (default 4)",
    )


def _not_blank(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty or blank")
    return text


def run_serve(args: argparse.Namespace, ctx: Context) -> int:
    """Serve --dir to a pieceworks manager until Ctrl-C or SIGTERM."""
    from pieceworks.registry import load_factory  # noqa: PLC0415

    main = cast(Callable[..., int], load_factory("remote-target", SERVICES_NAMESPACE))
    argv = ["--dir", args.dir, "--host", args.host, "--port", str(args.port)]
    if args.token_file:
        argv += ["--token-file", args.token_file]
    argv += ["--max-jobs", str(args.max_jobs)]
    return main(argv, prog="pieceworks target serve")
