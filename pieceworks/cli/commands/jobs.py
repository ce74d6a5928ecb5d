"""``pieceworks jobs post|list|show|watch|cancel|migrate``: jobs run by conductors."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pieceworks.cli.commands.backup import backup_request, label_and_guard_options
from pieceworks.cli.commands.conductor import (
    PERSISTENCE_ORIGIN,
    reachable_jobs_locations,
)
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.ids import id_type
from pieceworks.cli.options import (
    PRIORITIES,
    backup_request_options,
    jobs_location_options,
    positive_seconds,
    replicate_request_options,
)
from pieceworks.cli.output import iso_time, table
from pieceworks.protocols import ConfigError

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.execution.jobs import PostedJob
    from pieceworks.execution.status import JobStatus

__all__ = [
    "add_arguments",
    "report_posted",
    "run_cancel",
    "run_jobs",
    "run_list",
    "run_migrate",
    "run_post",
    "run_post_replicate",
    "run_show",
    "run_watch",
]

#: Seconds between two looks at a watched job.
WATCH_POLL = 0.5

#: Seconds a watched job may stay off the board with a non-final flow state
#: (`JobStatus.unfinished`: its conductor trashed it, or consumed it without
#: saving an outcome) before `jobs watch` stops (exit 1, ``job-unfinished``)
#: instead of waiting for an outcome that may never be written.
WATCH_SETTLE = 10.0


def add_arguments(parser: CommandParser) -> None:
    """``jobs`` and its actions: post (backup, restore, replicate, verify), list, show, watch..."""
    parser.describe("Jobs on the jobboard: `pieceworks jobs post|list|show|watch|cancel|migrate`.")
    actions = parser.add_commands("jobs_command")
    post = actions.add(
        "post",
        "run_post",
        summary="post a backup, restore, replicate or verify job; print its id",
        description=(
            "Post a job for any conductor that has the backend and store (named by\n"
            "--backend and --store: each conductor resolves them from its own\n"
            "configuration, so no option or secret travels with the job). Prints the\n"
            "job id (--json: an object)."
        ),
        codes=(ExitCode.FAILED,),
    )
    kinds = post.add_commands("post_kind", "KIND")
    post_backup = kinds.add(
        "backup",
        "run_post",
        summary="post a backup",
        description="Post a backup job.",
        codes=(ExitCode.FAILED,),
    )
    backup_request_options(post_backup)
    label_and_guard_options(post_backup)
    post_restore = kinds.add(
        "restore",
        "run_post",
        summary="post a restore",
        description="Post a job restoring BACKUP_ID into --volume ID.",
        codes=(ExitCode.FAILED,),
    )
    post_restore.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    post_restore.add_argument(
        "--volume", metavar="ID", type=id_type("volume id"), required=True, help="target volume"
    )
    post_restore.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the target volume if it exists (else the job fails, as restore does)",
    )
    post_verify = kinds.add(
        "verify",
        "run_post",
        summary="post a verification of a backup",
        description=(
            "Post a job checking every chunk of BACKUP_ID in --store against its hash, as\n"
            "`pieceworks verify` does (no backend is involved). The job fails when a chunk\n"
            "is missing or damaged (`jobs show` names each, up to five, with its offset;\n"
            "the result lists them all); damaged chunk objects are moved aside to\n"
            "quarantine/ unless --no-quarantine is given."
        ),
        codes=(ExitCode.FAILED,),
    )
    post_verify.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    post_verify.add_argument(
        "--no-quarantine",
        action="store_true",
        help="only report damaged chunks; leave them where they are (read-only check)",
    )
    post_replicate = kinds.add(
        "replicate",
        "run_post_replicate",
        summary="post a replication",
        description=(
            "Post a job copying --volume V of --from-backend A (or its --snapshot S) into\n"
            "--to-volume W of --to-backend B, as `pieceworks replicate` does, for any\n"
            "conductor whose host configures A, B and the store (--store, else the default\n"
            "one: the via-store strategy stages chunks there). Prints the job id (--json:\n"
            "an object). An existing W is replaced only with --overwrite: without it the\n"
            "job fails, and `jobs show` says why."
        ),
        codes=(ExitCode.FAILED,),
    )
    replicate_request_options(post_replicate)
    for kind in (post_backup, post_restore, post_verify, post_replicate):
        jobs_location_options(kind)
        kind.add_argument("--priority", choices=PRIORITIES, default="normal")

    listing = actions.add(
        "list",
        "run_list",
        summary="jobs on the board and finished jobs still logged",
        description="List jobs, oldest first: id, state, owner, name.",
        codes=(ExitCode.FAILED,),
    )
    listing.add_argument(
        "--state",
        type=_job_state,
        help="only jobs in this state (UNCLAIMED, CLAIMED, SUCCESS, FAILURE...)",
    )
    show = actions.add(
        "show",
        "run_show",
        summary="one job: state, owner, each step, result or reason for failure",
        description="Show job ID. Exit 3 if no such job is known.",
        codes=(ExitCode.FAILED, ExitCode.NOT_FOUND),
    )
    show.add_argument("job_id", metavar="ID", type=id_type("job id"))
    watch = actions.add(
        "watch",
        "run_watch",
        summary="follow a job until it ends; exit with its outcome",
        description=(
            "Print job ID's state and steps as they change until it ends. Exit 0 if it\n"
            "succeeded, 1 if it failed or was cancelled, 3 if no such job is known,\n"
            "124 if it had not ended after --timeout seconds. A job that left the\n"
            f"board with its flow not ended (RUNNING...) for {WATCH_SETTLE:g} s exits 1 too."
        ),
        codes=(ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.TIMED_OUT),
    )
    watch.add_argument("job_id", metavar="ID", type=id_type("job id"))
    watch.add_argument(
        "--timeout", type=positive_seconds, metavar="S", help="give up after S seconds"
    )
    cancel = actions.add(
        "cancel",
        "run_cancel",
        summary="cancel a job",
        description=(
            "Cancel job ID: a waiting job is removed from the board and ends REVERTED;\n"
            "a running job's conductor starts no further step, reverts and consumes it."
        ),
        codes=(ExitCode.FAILED, ExitCode.NOT_FOUND),
    )
    cancel.add_argument("job_id", metavar="ID", type=id_type("job id"))
    migrate = actions.add(
        "migrate",
        "run_migrate",
        summary="bring the persistence backend's schema up to date",
        description="Run TaskFlow's schema migrations on the persistence backend once.",
        codes=(ExitCode.FAILED,),
    )
    for action in (listing, show, watch, cancel, migrate):
        jobs_location_options(action)


#: What `jobs list --state` can match: the board's states, TaskFlow's flow states, UNKNOWN.
JOB_STATES = (
    "UNCLAIMED",
    "CLAIMED",
    "PENDING",
    "RUNNING",
    "SUCCESS",
    "FAILURE",
    "REVERTING",
    "REVERTED",
    "SUSPENDING",
    "SUSPENDED",
    "RESUMING",
    "UNKNOWN",
)


def _job_state(text: str) -> str:
    """``--state``, any case; one no job can be in is a usage error (it listed nothing)."""
    state = text.strip().upper()
    if state not in JOB_STATES:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r}: choose from {', '.join(JOB_STATES)}"
        )
    return state


def _locations(args: argparse.Namespace, ctx: Context) -> tuple[str, str]:
    """The jobboard and persistence URLs, each checked before any work."""
    return reachable_jobs_locations(args, ctx.config)


def run_jobs(args: argparse.Namespace, ctx: Context) -> int:
    """Not reached: argparse requires an ACTION."""
    raise CliError("choose an action: post, list, show, watch, cancel, migrate", ExitCode.USAGE)


def run_post(args: argparse.Namespace, ctx: Context) -> int:
    """Post a backup, restore or verify job naming the backend and store; print its id."""
    from pieceworks.common_algorithms.operations.guard import (  # noqa: PLC0415
        DEFAULT_GUARD_MAX_CHUNKS,
        DEFAULT_GUARD_PERCENT,
    )
    from pieceworks.execution.jobs import post_backup, post_restore, post_verify  # noqa: PLC0415

    jobboard, persistence = _locations(args, ctx)
    if args.post_kind == "verify":  # the store only
        store = args.store or ctx.config.store(None).name
        fields = {"backup_id": args.backup_id}
        if args.no_quarantine:  # else a job older conductors read
            fields["quarantine"] = False
        job = post_verify(jobboard, persistence, store, fields, priority=args.priority)
        return report_posted(ctx, job, {"store": store}, args.priority)
    # An explicit name is posted as is: the conductors' hosts configure it, maybe not this one.
    backend = args.backend or ctx.config.backend(None).name
    store = args.store or ctx.config.store(None).name
    if args.post_kind == "backup":
        request = backup_request(args, ctx.config.guard_sample, ctx.config.guard_max_chunks)
        fields = {
            "volume_id": request.volume_id,
            "backup_id": request.backup_id,
            "in_use": request.in_use,
            "force": request.force,
            "incremental": request.incremental,
            "codec": request.codec,
            "chunk_size": request.chunk_size,
        }
        if request.guard_percent != DEFAULT_GUARD_PERCENT:  # else a job older conductors read
            fields["guard_percent"] = request.guard_percent
        if request.guard_max_chunks != DEFAULT_GUARD_MAX_CHUNKS:  # the same
            fields["guard_max_chunks"] = request.guard_max_chunks
        if request.labels:  # the same
            fields["labels"] = dict(request.labels)
        job = post_backup(jobboard, persistence, backend, store, fields, priority=args.priority)
    else:
        fields = {"backup_id": args.backup_id, "volume_id": args.volume}
        if args.overwrite:  # else a job older conductors read
            fields["overwrite"] = True
        job = post_restore(jobboard, persistence, backend, store, fields, priority=args.priority)
    return report_posted(ctx, job, {"backend": backend, "store": store}, args.priority)


def run_post_replicate(args: argparse.Namespace, ctx: Context) -> int:
    """Post the replication the options describe (names only); print the job id."""
    from pieceworks.cli.commands.replicate import replicate_request  # noqa: PLC0415
    from pieceworks.common_algorithms.operations.requests import request_fields  # noqa: PLC0415
    from pieceworks.execution.jobs import post_replicate  # noqa: PLC0415

    jobboard, persistence = _locations(args, ctx)
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
    names = {
        "operation_id": request.operation_id,
        "source_backend": args.from_backend,
        "target_backend": args.to_backend,
        "volume_id": request.volume_id,
        "target_volume_id": request.target_volume,
        "store": store,
    }
    return report_posted(ctx, job, names, args.priority)


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
    from pieceworks.execution.status import list_jobs  # noqa: PLC0415

    jobboard, persistence = _locations(args, ctx)
    found = list_jobs(jobboard, persistence, state=args.state)
    ctx.out.data({"jobs": [{"message_type": "job", **s.to_dict()} for s in found]})
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
            for k in (
                "backup_id",
                "volume_id",
                "target_volume_id",
                "strategy",
                "size",
                "ok",
                "chunks_checked",
            )
            if k in s.result
        )
        lines.append(f"result: {summary}")
    lines += [f"error: {e}" for e in s.errors]
    return "\n".join(lines)


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    """One job's state, owner, steps and result or reasons; exit 3 if unknown."""
    from pieceworks.execution.status import job_status  # noqa: PLC0415

    jobboard, persistence = _locations(args, ctx)
    status = job_status(jobboard, persistence, args.job_id)
    ctx.out.data(status.to_dict())
    ctx.out.result(describe(status))
    return ExitCode.OK


def run_watch(args: argparse.Namespace, ctx: Context) -> int:
    """Follow a job until it ends; exit 0 on success, 1 otherwise, 124 (`JobTimeout`) after
    ``--timeout`` seconds.

    A job ends when its flow's state is final (`JobStatus.done`). One off the
    board whose flow reads another state (`JobStatus.unfinished`) is watched
    on for `WATCH_SETTLE` seconds, then reported as ended unfinished (exit 1,
    ``job-unfinished``), so watch never waits forever without ``--timeout``.
    """
    from pieceworks.execution.jobs import JobTimeout  # noqa: PLC0415
    from pieceworks.execution.status import job_status  # noqa: PLC0415

    jobboard, persistence = _locations(args, ctx)
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    last = ""
    unfinished_since: float | None = None
    while True:
        status = job_status(jobboard, persistence, args.job_id)
        now = time.monotonic()
        text = describe(status)
        if text != last:
            ctx.out.text(text)
            last = text
        if status.done:
            break
        if not status.unfinished:
            unfinished_since = None
        elif unfinished_since is None:
            unfinished_since = now
        elif now - unfinished_since >= WATCH_SETTLE:
            break
        if deadline is not None and now > deadline:
            raise JobTimeout(status.job_id, now - started, status.name)
        time.sleep(WATCH_POLL)
    ctx.out.data(status.to_dict())
    ctx.out.result(f"job {status.job_id}: {status.state}")
    if status.state == "SUCCESS":
        return ExitCode.OK
    if status.done:
        ctx.out.explain(
            "job-failed", f"job {status.job_id} ended {status.state}", "`jobs show` says why"
        )
    else:
        ctx.out.explain(
            "job-unfinished",
            f"job {status.job_id} left the board with its flow {status.state} for"
            f" {WATCH_SETTLE:g} s: its conductor gave it up without recording an outcome",
            "`jobs show` gives the steps that ran; the conductor's log says why; post it again",
        )
    return ExitCode.FAILED


def run_cancel(args: argparse.Namespace, ctx: Context) -> int:
    """Cancel a job (see the command's help)."""
    from pieceworks.execution.jobs import JobFailed, cancel_job  # noqa: PLC0415
    from pieceworks.execution.status import job_status  # noqa: PLC0415

    jobboard, persistence = _locations(args, ctx)
    try:
        outcome = cancel_job(jobboard, persistence, args.job_id)
    except JobFailed:  # not on the board: unknown (exit 3, job-not-found) or ended
        ended = job_status(jobboard, persistence, args.job_id)
        raise CliError(
            f"job {ended.job_id} has ended ({ended.state}): nothing to cancel",
            ExitCode.FAILED,
            reference="job-ended",
            hint="`jobs show` gives its outcome",
        ) from None
    # outcome: "cancelled" (it was waiting) or "requested" (its conductor stops it);
    # "cancelled" is its deprecated old name (a string, though the name reads as a yes/no)
    ctx.out.data({"job_id": args.job_id, "outcome": outcome, "cancelled": outcome})
    ctx.out.result(f"job {args.job_id}: {outcome}")
    return ExitCode.OK


def run_migrate(args: argparse.Namespace, ctx: Context) -> int:
    """Run TaskFlow's schema migrations on the persistence backend."""
    from pieceworks.cli.context import check_persistence  # noqa: PLC0415
    from pieceworks.common_algorithms.runner import migrate  # noqa: PLC0415

    persistence = args.persistence or ctx.config.jobs.persistence
    if not persistence:
        raise ConfigError("no persistence: give --persistence URL or set [jobs] persistence")
    check_persistence(persistence, PERSISTENCE_ORIGIN)
    migrate(persistence)
    # "persistence" ("migrated") is the deprecated old name of "migrated"
    ctx.out.data({"migrated": True, "persistence": "migrated"})
    ctx.out.result("persistence schema up to date")
    return ExitCode.OK
