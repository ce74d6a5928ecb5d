"""``pieceworks jobs post replicate``: post a replication for a conductor to run.

The options are those of ``pieceworks replicate`` (the parser's shared
replication group) plus ``--priority`` and the job locations; the source
and target backends and the store are posted by name only, each conductor
resolving them from its own host's configuration.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from pieceworks.cli.context import Context

__all__ = ["add_arguments", "run_post_replicate"]

NAME = "replicate"
HANDLER = "post_replicate:run_post_replicate"
SUMMARY = "post a replication"
DESCRIPTION = """\
Post a job copying --volume V of --from-backend A (or its --snapshot S) into
--to-volume W of --to-backend B, as `pieceworks replicate` does, for any
conductor whose host configures A, B and the store (--store, else the default
one: the via-store strategy stages chunks there). Prints the job id (--json:
an object). An existing W is replaced only with --overwrite: without it the
job fails, and `jobs show` says why."""
CODES = (ExitCode.FAILED,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Nothing of its own: the parser adds the replication options, locations and priority."""


def run_post_replicate(args: argparse.Namespace, ctx: Context) -> int:
    """Post the replication the options describe; print the job id."""
    from pieceworks.cli.commands.conductor import jobs_locations  # noqa: PLC0415
    from pieceworks.cli.commands.jobs import report_posted  # noqa: PLC0415
    from pieceworks.cli.commands.replicate import replicate_request  # noqa: PLC0415
    from pieceworks.common_algorithms.requests import request_fields  # noqa: PLC0415
    from pieceworks.execution.jobs import post_replicate  # noqa: PLC0415

    jobboard, persistence = jobs_locations(args, ctx.config)
    # Names are posted as they are: the conductors' hosts configure them, maybe not this one.
    store = args.store or ctx.config.store(None).name
    request = replicate_request(args)
    job = post_replicate(
        jobboard,
        persistence,
        args.from_backend,
        args.to_backend,
        request_fields(request),
        store=store,
        priority=args.priority,
    )
    return report_posted(
        ctx,
        job,
        {
            "operation_id": request.operation_id,
            "source_backend": args.from_backend,
            "target_backend": args.to_backend,
            "volume_id": request.volume_id,
            "target_volume_id": request.target_volume,
            "store": store,
        },
        args.priority,
    )
