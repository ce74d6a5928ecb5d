"""``pieceworks target serve``: run a storage target for the remote driver.

The service is found as an entry point (namespace ``pieceworks.services``,
name ``remote-target``) like any driver, so the command stays independent of
the driver's code; the options after ``serve`` are the service's own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import cast

from pieceworks.cli.context import Context
from pieceworks.registry import load_factory

__all__ = ["SERVICES_NAMESPACE", "run_serve"]

SERVICES_NAMESPACE = "pieceworks.services"


def run_serve(args: argparse.Namespace, ctx: Context) -> int:
    """Serve --dir to a pieceworks manager until Ctrl-C or SIGTERM."""
    main = cast(Callable[..., int], load_factory("remote-target", SERVICES_NAMESPACE))
    argv = ["--dir", args.dir, "--host", args.host, "--port", str(args.port)]
    if args.token_file:
        argv += ["--token-file", args.token_file]
    argv += ["--max-jobs", str(args.max_jobs)]
    return main(argv, prog="pieceworks target serve")
