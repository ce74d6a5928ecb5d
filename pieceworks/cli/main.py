"""``pieceworks``: parse the arguments, run the command, turn errors into exit codes.

`main` parses (`pieceworks.cli.parser`), sets up logging (masked, on
stderr), reads the configuration if the command needs it, imports the
command's module and runs it. Every error ends as one ``pieceworks: error:
...`` line and the exit code of `pieceworks.cli.exit_codes`. TaskFlow and
the drivers are imported only once a command runs, so ``--help``, usage
errors and configuration errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from pieceworks.cli import startup
from pieceworks.cli.config import Config, load_config
from pieceworks.cli.exit_codes import CliError, ExitCode, Failure, code_for, failure_for
from pieceworks.cli.masking import Masker
from pieceworks.cli.options import UsageError
from pieceworks.cli.output import Output
from pieceworks.cli.parser import build_parser
from pieceworks.cli.signals import terminate_as_interrupt
from pieceworks.failpoints import FailpointRaised, configure
from pieceworks.protocols import BackupNotFound, PieceworksError

__all__ = ["build_parser", "main", "resolve"]

log = logging.getLogger(__name__)

#: Libraries that are chatty below WARNING; shown only with -vv.
_NOISY = ("taskflow", "stevedore", "alembic", "sqlalchemy")


class _MaskingFormatter(logging.Formatter):
    """Formats log records and masks secrets in the result."""

    def __init__(self, masker: Masker) -> None:
        super().__init__("pieceworks: %(levelname)s: %(name)s: %(message)s")
        self.masker = masker

    def format(self, record: logging.LogRecord) -> str:
        return self.masker.text(super().format(record))


def _setup_logging(masker: Masker, verbose: int, quiet: bool) -> None:
    """Log to stderr through the masker: warnings by default, -v info, -vv debug.

    Libraries (TaskFlow, SQLAlchemy...) log only errors by default: their
    warnings about a failure are repeated by our own one-line error.
    """
    levels = (logging.WARNING, logging.INFO, logging.DEBUG)
    level = logging.ERROR if quiet else levels[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter(masker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbose < 2:
        noisy = logging.ERROR if verbose == 0 else logging.WARNING
        for name in _NOISY:
            logging.getLogger(name).setLevel(max(level, noisy))


def resolve(handler: str) -> Callable[..., int]:
    """The function ``"module:function"`` names (module under pieceworks.cli.commands)."""
    module_name, _, function = handler.partition(":")
    if "." not in module_name:
        module_name = f"pieceworks.cli.commands.{module_name}"
    return cast(Callable[..., int], getattr(importlib.import_module(module_name), function))


def _run(args: argparse.Namespace, out: Output, env: Mapping[str, str]) -> int:
    config: Config | None = None
    if args.needs_config:
        config = load_config(args.config, env)
        out.masker.add(config.secrets)
    command = resolve(args.handler)
    # Imported here, with the command: it brings in TaskFlow and the registry.
    from pieceworks.cli.context import Context  # noqa: PLC0415
    from pieceworks.common_algorithms.gc.leases import set_stale_after, stale_after  # noqa: PLC0415

    if not getattr(args, "runs_flow", False):  # else start-up ends when the flow's engine is loaded
        startup.done()

    ctx = Context(
        out,
        env,
        config_path=args.config,
        backend=args.backend,
        store=args.store,
        config=config,
        password_file=args.password_file,
    )
    before = stale_after()  # the configuration sets it for this command only
    try:
        return int(command(args, ctx))
    except BackupNotFound as exc:  # an id given short: say what it is the start of
        from pieceworks.cli.near_ids import given_backup_ids, with_near_ids  # noqa: PLC0415

        better = with_near_ids(exc, given_backup_ids(args), ctx.opened_stores())
        if better is None:
            raise
        raise better from exc
    finally:
        set_stale_after(before)


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether ``--json`` is among the options (before a ``--``), parsed or not."""
    options = argv[: list(argv).index("--")] if "--" in argv else argv
    return "--json" in options


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run ``pieceworks`` with `argv` (default: the process's) and return the exit code.

    Under ``--json`` every failure, a usage error included, ends with one
    ``exit_error`` line on stderr (`pieceworks.cli.exit_codes.Failure`).
    """
    startup.begin()
    try:
        return _main(sys.argv[1:] if argv is None else list(argv), env)
    finally:
        startup.end()


def _main(argv: list[str], env: Mapping[str, str] | None) -> int:
    parser = build_parser(lazy=True, json_errors=_wants_json(argv))
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:  # --json: argparse's message as an exit_error
        failure = Failure(ExitCode.USAGE, "usage-error", f"{exc.prog}: {exc.message}")
        Output(Masker(), json_mode=True).fail(failure)
        return ExitCode.USAGE
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    masker = Masker()
    out = Output(masker, json_mode=bool(args.json), quiet=bool(args.quiet))
    _setup_logging(masker, int(args.verbose), bool(args.quiet))
    try:
        # A bad PIECEWORKS_FAILPOINTS is a usage error before any work starts.
        configure()
        with terminate_as_interrupt():  # SIGTERM: the cleanup of Ctrl-C (cli/signals.py)
            code = _run(args, out, os.environ if env is None else env)
    except KeyboardInterrupt as exc:
        out.fail(failure_for(exc, "interrupted"))
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `pieceworks list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as exc:
        code = code_for(exc)
        log.debug("error details", exc_info=True)
        out.fail(failure_for(exc, _message(exc, code)))
        return code
    if code != ExitCode.OK and out.json_mode:  # the summary is printed; say how it failed
        exit_code = ExitCode(code) if code in ExitCode._value2member_map_ else ExitCode.FAILED
        if out.explanation is None:
            out.fail(Failure.returned(exit_code))
        else:
            reference, message, hint = out.explanation
            out.fail(Failure(exit_code, reference, message, hint))
    return code


def _message(exc: Exception, code: ExitCode) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError):  # in words, without "[Errno N]": the cause and the file
        from pieceworks.protocols.os_errors import os_error_text  # noqa: PLC0415 (failures only)

        text = os_error_text(exc)
    cleanup = getattr(exc, "cleanup_errors", None)
    if cleanup:
        text += f" (cleanup also failed, the rest of it ran: {'; '.join(cleanup)})"
    if code == ExitCode.FAILED and not isinstance(
        exc, CliError | PieceworksError | FailpointRaised
    ):
        return f"unexpected {type(exc).__name__}: {text} (run with -vv for details)"
    return text


if __name__ == "__main__":
    sys.exit(main())
