"""``pieceworks jobs post|list|show|watch|cancel|migrate``: jobs run by conductors."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

from pieceworks.cli.commands.backup import backup_request
from pieceworks.cli.commands.conductor import jobs_locations
from pieceworks.cli.context import Context
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.output import iso_time, table
from pieceworks.common_algorithms.runner import migrate
from pieceworks.execution.jobs import (
    JobTimeout,
    PostedJob,
    cancel_job,
    post_backup,
    post_restore,
)
from pieceworks.execution.status import JobStatus, job_status, list_jobs
from pieceworks.protocols import ConfigError

__all__ = [
    "report_posted",
    "run_cancel",
    "run_jobs",
    "run_list",
    "run_migrate",
    "run_post",
    "run_show",
    "run_watch",
]

#: Seconds between two looks at a watched job.
WATCH_POLL = 0.5


def run_jobs(args: argparse.Namespace, ctx: Context) -> int:
    """Not reached: argparse requires an ACTION."""
    raise CliError("choose an action: post, list, show, watch, cancel, migrate", ExitCode.USAGE)


def run_post(args: argparse.Namespace, ctx: Context) -> int:
    """Post a backup or restore job naming the backend and store; print its id."""
    jobboard, persistence = jobs_locations(args, ctx.config)
    # An explicit name is posted as is: the conductors' hosts configure it, maybe not this one.
    backend = args.backend or ctx.config.backend(None).name
    store = args.store or ctx.config.store(None).name
    if args.post_kind == "backup":
        request = backup_request(args)
        fields = {
            "volume_id": request.volume_id,
            "backup_id": request.backup_id,
            "in_use": request.in_use,
            "force": request.force,
            "incremental": request.incremental,
            "codec": request.codec,
            "chunk_size": request.chunk_size,
        }
        job = post_backup(jobboard, persistence, backend, store, fields, priority=args.priority)
    else:
        fields = {"backup_id": args.backup_id, "volume_id": args.volume}
        job = post_restore(jobboard, persistence, backend, store, fields, priority=args.priority)
    return report_posted(ctx, job, {"backend": backend, "store": store}, args.priority)


def report_posted(ctx: Context, job: PostedJob, names: Mapping[str, object], priority: str) -> int:
    """Print a posted job's id (``--json``: the job, `names` and `priority`); exit 0."""
    ctx.out.data(
        {
            "job_id": job.job_uuid,
            "name": job.name,
            **names,
            "priority": priority,
            "book_id": job.book_uuid,
            "flow_id": job.flow_uuid,
            "result_atom": job.result_atom,
        }
    )
    ctx.out.result(job.job_uuid)
    ctx.out.note(f"posted {job.name} as job {job.job_uuid}")
    return ExitCode.OK


def _line(s: JobStatus) -> list[object]:
    posted = iso_time(s.posted) if s.posted else "-"
    return [s.job_id, s.state, s.owner or "-", posted, s.name]


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """Jobs on the board and finished ones still logged, oldest first."""
    jobboard, persistence = jobs_locations(args, ctx.config)
    found = list_jobs(jobboard, persistence, state=args.state)
    ctx.out.data({"jobs": [s.to_dict() for s in found]})
    if found:
        ctx.out.result(
            table(["JOB_ID", "STATE", "OWNER", "POSTED", "NAME"], [_line(s) for s in found])
        )
    else:
        ctx.out.note("no jobs")
    return ExitCode.OK


def describe(s: JobStatus) -> str:
    """A job's status as text: state, owner, each step, the result or why it failed."""
    lines = [f"job {s.job_id} ({s.name}): {s.state}" + (f", owner {s.owner}" if s.owner else "")]
    lines += [f"  {atom}: {state or '-'}" for atom, state in s.atoms.items()]
    if s.result is not None:
        summary = ", ".join(
            f"{k}={s.result[k]}"
            for k in ("backup_id", "volume_id", "target_volume_id", "strategy", "size")
            if k in s.result
        )
        lines.append(f"result: {summary}")
    lines += [f"error: {e}" for e in s.errors]
    return "\n".join(lines)


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    """One job's state, owner, steps and result or reasons; exit 3 if unknown."""
    jobboard, persistence = jobs_locations(args, ctx.config)
    status = job_status(jobboard, persistence, args.job_id)
    ctx.out.data(status.to_dict())
    ctx.out.result(describe(status))
    return ExitCode.OK


def run_watch(args: argparse.Namespace, ctx: Context) -> int:
    """Follow a job until it ends; exit 0 on success, 1 otherwise, 124 (`JobTimeout`) after
    ``--timeout`` seconds."""
    jobboard, persistence = jobs_locations(args, ctx.config)
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    last = ""
    while True:
        status = job_status(jobboard, persistence, args.job_id)
        text = describe(status)
        if text != last:
            ctx.out.text(text)
            last = text
        if status.done:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeout(status.job_id, time.monotonic() - started, status.name)
        time.sleep(WATCH_POLL)
    ctx.out.data(status.to_dict())
    ctx.out.result(f"job {status.job_id}: {status.state}")
    return ExitCode.OK if status.state == "SUCCESS" else ExitCode.FAILED


def run_cancel(args: argparse.Namespace, ctx: Context) -> int:
    """Cancel a job (see the command's help)."""
    jobboard, persistence = jobs_locations(args, ctx.config)
    outcome = cancel_job(jobboard, persistence, args.job_id)
    ctx.out.data({"job_id": args.job_id, "cancelled": outcome})
    ctx.out.result(f"job {args.job_id}: {outcome}")
    return ExitCode.OK


def run_migrate(args: argparse.Namespace, ctx: Context) -> int:
    """Run TaskFlow's schema migrations on the persistence backend."""
    persistence = args.persistence or ctx.config.jobs.persistence
    if not persistence:
        raise ConfigError("no persistence: give --persistence URL or set [jobs] persistence")
    migrate(persistence)
    ctx.out.data({"persistence": "migrated"})
    ctx.out.result("persistence schema up to date")
    return ExitCode.OK
