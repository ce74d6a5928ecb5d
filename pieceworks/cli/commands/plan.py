"""``pieceworks plan backup|restore``: the strategies an operation would try, and why.

Planning is pure (capabilities, store and request only), so the plan can be
shown before anything runs: as text, JSON (`Plan.to_dict`), Graphviz dot
(`Plan.to_dot`) or SVG rendered by Graphviz's ``dot`` if it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from typing import TYPE_CHECKING

from pieceworks.cli.commands.backup import backup_request
from pieceworks.cli.commands.replicate import backends, replicate_request
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.ids import id_type
from pieceworks.cli.options import (
    backup_request_options,
    plan_output_options,
    replicate_request_options,
)

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms import Plan

__all__ = [
    "add_arguments",
    "render_svg",
    "run_plan",
    "run_plan_backup",
    "run_plan_replicate",
    "run_plan_restore",
]

DESCRIPTION = """\
Show the plan of a backup, restore or replication: every strategy in order,
whether it can run on these backends and store and why; the first eligible
one runs, the next ones are its fallbacks. Exit 1 if no strategy can run."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT)


def add_arguments(parser: CommandParser) -> None:
    """``plan`` and its actions: ``backup``, ``restore``, ``replicate``."""
    parser.describe(DESCRIPTION, CODES)
    operations = parser.add_commands("operation", "OPERATION")
    backup = operations.add(
        "backup",
        "run_plan_backup",
        summary="plan a backup",
        description="Show the backup plan of --volume with the given flags.",
        codes=CODES,
    )
    backup_request_options(backup)
    plan_output_options(backup)
    restore = operations.add(
        "restore",
        "run_plan_restore",
        summary="plan a restore",
        description="Show the restore plan of BACKUP_ID into --volume (default: its volume).",
        codes=CODES,
    )
    restore.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))
    restore.add_argument(
        "--volume",
        metavar="ID",
        type=id_type("volume id"),
        help="target volume (default: a new one, as restore picks)",
    )
    plan_output_options(restore)
    replicate = operations.add(
        "replicate",
        "run_plan_replicate",
        summary="plan a replication",
        description="Show the replication plan of --volume from --from-backend to --to-backend.",
        codes=CODES,
    )
    replicate_request_options(replicate)
    plan_output_options(replicate)


def render_svg(dot_source: str) -> str:
    """Render Graphviz dot to SVG with the ``dot`` program; `CliError` if it is missing."""
    dot = shutil.which("dot")
    if dot is None:
        raise CliError(
            "--format svg needs Graphviz's 'dot' program, which is not on PATH: install"
            " graphviz (e.g. apt-get install graphviz), or use --format dot and render it"
            " elsewhere",
            ExitCode.USAGE,
        )
    done = subprocess.run(
        [dot, "-Tsvg"], input=dot_source, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise CliError(f"dot failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _emit(plan: Plan, args: argparse.Namespace, ctx: Context) -> int:
    """Print or write (``-o FILE``, any format) the plan; exit 1 if nothing can run."""
    if ctx.out.json_mode and args.format not in ("text", "json"):
        raise CliError(
            f"--json and --format {args.format} ask for two formats: give one of them",
            ExitCode.USAGE,
        )
    fmt = "json" if ctx.out.json_mode else args.format
    masker = ctx.out.masker
    if fmt == "json":  # JSON is masked as data, never as text (see Masker.text)
        rendered = json.dumps(masker.data(plan.to_dict()), indent=2) + "\n"
    elif fmt == "text":
        rendered = plan.format_text()
    elif fmt == "dot":
        rendered = plan.to_dot()
    else:
        rendered = render_svg(plan.to_dot())
    if args.output and args.output != "-":  # "-" is standard output, as curl's and tar's -o
        _write_output(args.output, rendered if fmt == "json" else masker.text(rendered))
        ctx.out.note(f"wrote the {fmt} plan to {args.output}")
    elif fmt == "json":
        ctx.out.json_mode = True
        ctx.out.data(plan.to_dict())
    else:
        ctx.out.result(rendered.rstrip("\n"))
    if plan.chosen is None:
        message = f"no {plan.operation} strategy can run on backend '{plan.backend}'"
        ctx.out.note(message)
        ctx.out.explain("no-eligible-strategy", message, "the plan says why each cannot run")
        return ExitCode.FAILED
    return ExitCode.OK


def _write_output(path: str, text: str) -> None:
    """Write `text` into the file `path` whole or not at all; `CliError` naming `path`.

    A regular file (new, or replaced) is written under a temporary name in
    its directory, then renamed onto `path` (through a symbolic link: onto
    the file it names, keeping its mode): a full disk or an I/O error left
    an empty or cut file, and an old plan overwritten by nothing. Anything
    else that exists (``/dev/stdout``, a FIFO) is written in place. A path
    that cannot be a file (a directory, in a missing one) is a usage error
    (exit 2); a failed write exits 1, and nothing is left behind.
    """
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # a component that is a file, a name too long...
        raise CliError(f"cannot write the plan to {path}: {exc.strerror}", ExitCode.USAGE) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise CliError(f"cannot write the plan to {path}: Is a directory", ExitCode.USAGE)
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:  # /dev/full: the command failed
            raise CliError(f"cannot write the plan to {path}: {exc.strerror}") from None
        return
    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name[:200]}.", suffix=".pw-tmp", dir=directory)
    except OSError as exc:  # a directory that is missing or cannot be written
        raise CliError(f"cannot write the plan to {path}: {exc.strerror}", ExitCode.USAGE) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:  # a full disk, an I/O error: the command failed
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CliError(f"cannot write the plan to {path}: {exc.strerror}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def run_plan_backup(args: argparse.Namespace, ctx: Context) -> int:
    """Show the backup plan for --volume with the given flags."""
    from pieceworks.common_algorithms import plan_backup  # noqa: PLC0415

    backend, store = ctx.backend(), ctx.store()
    request = backup_request(args)
    ctx.require_volume(backend, request.volume_id)
    return _emit(plan_backup(backend, store, request), args, ctx)


def run_plan_restore(args: argparse.Namespace, ctx: Context) -> int:
    """Show the restore plan of BACKUP_ID into --volume (default: the new volume restore picks)."""
    from pieceworks.common_algorithms import RestoreRequest, plan_restore  # noqa: PLC0415
    from pieceworks.common_algorithms.format.manifest import read_manifest  # noqa: PLC0415
    from pieceworks.common_algorithms.operations.targets import new_volume_id  # noqa: PLC0415

    backend, store = ctx.backend(), ctx.store()
    manifest = read_manifest(store.objects, args.backup_id)
    volume = args.volume or new_volume_id(backend, f"{manifest.volume_id}-from-{args.backup_id}")
    request = RestoreRequest(args.backup_id, volume)
    return _emit(plan_restore(backend, store, request), args, ctx)


def run_plan_replicate(args: argparse.Namespace, ctx: Context) -> int:
    """Show the replication plan of --volume from --from-backend to --to-backend."""
    from pieceworks.common_algorithms import plan_replicate  # noqa: PLC0415

    source, target = backends(args, ctx)
    request = replicate_request(args)
    ctx.require_volume(source, request.volume_id)
    return _emit(plan_replicate(source, target, ctx.store(), request), args, ctx)


def run_plan(args: argparse.Namespace, ctx: Context) -> int:
    """Never runs: argparse requires ``backup`` or ``restore`` after ``plan``."""
    raise CliError("plan needs an operation: backup, restore or replicate", ExitCode.USAGE)
