"""``pieceworks drivers`` and ``pieceworks check-driver MODULE:CLASS``.

Both look at driver classes only, never at a configured backend: what the
installed drivers (entry points) can do, and whether a class a driver
author is writing passes the run-time capability check and completes any
backup or restore strategy.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zope.interface.interface import InterfaceClass

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.output import table
from pieceworks.protocols import (
    CAPABILITIES,
    InvalidDriver,
    ObjectInfo,
    ObjectStore,
    StoreSpec,
    capabilities_of,
    capability_name,
    driver_problems,
    verify_driver,
)
from pieceworks.registry import DRIVERS_NAMESPACE, STORES_NAMESPACE, discover

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms import Plan

__all__ = [
    "DriverReport",
    "add_check_driver_arguments",
    "add_drivers_arguments",
    "examine",
    "run_check_driver",
    "run_drivers",
]

CHECK_DRIVER_DESCRIPTION = """\
Import MODULE:CLASS (the current directory is importable), check every
capability it claims (members, parameter and return annotations, async def,
abstract methods left: what registration checks), and list the backup and
restore strategies its pieces complete.
With --backend NAME instead of MODULE:CLASS, build that configured backend
from its configuration section (a constructor that does not take the
section's options is a configuration error), verify it the same way, and run
the conformance checks that need no in-place write on a scratch volume it
creates and removes (when the backend can: stream-in and delete_volume).
Exit 1 with the InvalidDriver message if a capability is incomplete, if it
completes no strategy at all or if a conformance check fails; exit 2 if
MODULE:CLASS cannot be imported or the backend's section is wrong."""


def add_drivers_arguments(parser: CommandParser) -> None:
    """``drivers`` has only the common options (and reads no configuration)."""
    parser.describe(
        "List the drivers installed as entry points (pieceworks.drivers) as a matrix of\n"
        "the capabilities each provides, the strategies those complete, the store\n"
        "drivers (pieceworks.stores), and every entry point that failed to load.",
        needs_config=False,
    )


def add_check_driver_arguments(parser: CommandParser) -> None:
    """The arguments of ``check-driver``: MODULE:CLASS, or --backend NAME."""
    parser.describe(
        CHECK_DRIVER_DESCRIPTION, (ExitCode.FAILED, ExitCode.NOT_FOUND), needs_config=False
    )
    parser.add_argument(
        "target",
        metavar="MODULE:CLASS",
        nargs="?",
        help="the driver class to check (or give --backend NAME)",
    )
    parser.add_argument("--name", help="the name used in messages (default: the class name)")


class _PlanningStore(ObjectStore):
    """A store that is never touched: planning looks only at capabilities and names."""

    def _untouched(self) -> NotImplementedError:
        return NotImplementedError("the planning store holds nothing")

    def put(self, key: str, data: bytes | memoryview) -> None:
        raise self._untouched()

    def get(self, key: str) -> bytes:
        raise self._untouched()

    def head(self, key: str) -> ObjectInfo:
        raise self._untouched()

    def delete(self, key: str) -> None:
        raise self._untouched()

    def list(self, prefix: str) -> Iterator[str]:
        return iter(())  # it holds nothing: `Store` lists it to look for keys


@dataclass(frozen=True)
class DriverReport:
    """What a driver class provides and which strategies those pieces complete."""

    name: str
    target: str
    capabilities: tuple[str, ...]
    backup_free: Plan
    backup_in_use: Plan
    restore: Plan
    tags: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """The JSON form used by ``drivers --json`` and ``check-driver --json``."""
        return {
            "name": self.name,
            "target": self.target,
            "capabilities": list(self.capabilities),
            "backup_strategies": {
                "not_in_use": list(self.backup_free.eligible),
                "in_use": list(self.backup_in_use.eligible),
            },
            "restore_strategies": list(self.restore.eligible),
            "missing": self.missing(),
            "tags": list(self.tags),
        }

    def missing(self) -> dict[str, list[str]]:
        """Strategies it cannot complete, each with the pieces that would complete it."""
        out: dict[str, list[str]] = {}
        for plan in (self.backup_free, self.restore):
            for s in plan.strategies:
                if not s.eligible and s.needs:
                    out[f"{plan.operation} {s.name}"] = list(s.needs)
        return out

    def completes_anything(self) -> bool:
        """Whether it completes at least one backup or restore strategy."""
        return bool(self.backup_free.eligible or self.restore.eligible)


def _target(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def examine(name: str, driver: object, capabilities: tuple[InterfaceClass, ...]) -> DriverReport:
    """Plan backups (volume in use or not) and restores for a driver with `capabilities`."""
    from pieceworks.common_algorithms import (  # noqa: PLC0415
        Backend,
        BackupRequest,
        RestoreRequest,
        Store,
        backend_tags,
        plan_backup,
        plan_restore,
    )

    backend = Backend(name, driver, frozenset(capabilities))
    store = Store("check", _PlanningStore(), StoreSpec("check", "planning"))
    return DriverReport(
        name=name,
        target=_target(driver),
        capabilities=tuple(sorted(capability_name(c) for c in capabilities)),
        backup_free=plan_backup(backend, store, BackupRequest("volume")),
        backup_in_use=plan_backup(backend, store, BackupRequest("volume", in_use=True)),
        restore=plan_restore(backend, store, RestoreRequest("backup", "volume")),
        tags=tuple(sorted({t for ts in backend_tags(backend).values() for t in ts})),
    )


def _strategies_text(report: DriverReport) -> list[str]:
    def names(plan: Plan) -> str:
        return ", ".join(plan.eligible) or "none"

    lines = [
        f"  backup, volume not in use: {names(report.backup_free)}",
        f"  backup, volume in use:     {names(report.backup_in_use)}",
        f"  restore:                   {names(report.restore)}",
    ]
    lines += [
        f"  missing {what}: needs {' + '.join(needs)}" for what, needs in report.missing().items()
    ]
    return lines


# -- drivers ---------------------------------------------------------------------------


def _cell(capability: str, report: DriverReport, problems: dict[str, list[str]]) -> str:
    """``yes`` for a verified capability, ``FAILS`` for a claimed one that is not."""
    if capability in problems:
        return "FAILS"
    return "yes" if capability in report.capabilities else "-"


def run_drivers(args: argparse.Namespace, ctx: Context) -> int:
    """List installed drivers and store drivers with their capabilities."""
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415

    drivers, stores = discover(DRIVERS_NAMESPACE), discover(STORES_NAMESPACE)
    reports: list[DriverReport] = []
    factories: list[str] = []
    broken: dict[str, dict[str, list[str]]] = {}
    for name, factory in drivers.factories.items():
        caps = capabilities_of(factory)
        if caps:
            problems = driver_problems(factory, caps)
            verified = tuple(c for c in caps if capability_name(c) not in problems)
            reports.append(examine(name, factory, verified))
            if problems:
                broken[name] = problems
        else:
            factories.append(name)
    failures = [
        {"namespace": found.namespace, "name": name, "error": error}
        for found in (drivers, stores)
        for name, error in found.failures.items()
    ]
    store_caps = {
        name: sorted(capability_name(c) for c in capabilities_of(factory))
        for name, factory in stores.factories.items()
    }
    store_rows = [
        {"name": name, "target": _target(stores.factories[name]), "capabilities": caps}
        for name, caps in store_caps.items()
    ]
    ctx.out.data(
        with_deprecated(
            "drivers",
            {
                "drivers": [
                    {**r.to_dict(), "capability_problems": broken.get(r.name, {})} for r in reports
                ]
                + [
                    {"name": n, "target": _target(drivers.factories[n]), "capabilities": None}
                    for n in factories
                ],
                "store_drivers": store_rows,
                "failures": failures,
            },
        )
    )
    out = ctx.out
    out.result(f"drivers ({DRIVERS_NAMESPACE}):")
    if reports:
        rows = [
            [cap, *(_cell(cap, r, broken.get(r.name, {})) for r in reports)]
            for cap in CAPABILITIES
            if cap != "object-store"
        ]
        out.result(table(["capability", *(r.name for r in reports)], rows))
        for r in reports:
            out.result(f"{r.name} ({r.target}) completes:")
            out.result("\n".join(_strategies_text(r)))
            for cap, found in broken.get(r.name, {}).items():
                out.result(f"  FAILS {cap}: " + "; ".join(found))
    else:
        out.result("  none")
    for name in factories:
        out.result(f"{name}: a factory, not a class: its capabilities are known once configured")
    out.result(f"\nstore drivers ({STORES_NAMESPACE}):")
    rows2 = [
        [name, _target(stores.factories[name]), ", ".join(caps)]
        for name, caps in store_caps.items()
    ]
    out.result(table(["name", "entry point", "capabilities"], rows2) if rows2 else "  none")
    if failures:
        out.result("\nfailed to load:")
        for f in failures:
            out.result(f"  {f['name']} ({f['namespace']}): {f['error']}")
    return ExitCode.OK


# -- check-driver ------------------------------------------------------------------------


def _load_class(spec: str) -> object:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:CLASS, not {spec!r}", ExitCode.USAGE)
    if os.getcwd() not in sys.path:  # like `python -m`: modules next to you import
        sys.path.insert(0, os.getcwd())
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:
        raise CliError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}", ExitCode.USAGE
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no {attr!r}", ExitCode.USAGE) from None
    return obj


def run_check_driver(args: argparse.Namespace, ctx: Context) -> int:
    """Verify a driver class (MODULE:CLASS) or a configured backend (--backend NAME)."""
    if args.target is None and args.backend is None:
        raise CliError("give MODULE:CLASS, or --backend NAME", ExitCode.USAGE)
    if args.target is not None and args.backend is not None:
        raise CliError("give MODULE:CLASS or --backend NAME, not both", ExitCode.USAGE)
    if args.target is None:
        return _check_backend(args, ctx)
    cls = _load_class(args.target)
    name = args.name or getattr(cls, "__name__", args.target)
    try:
        capabilities = verify_driver(cls, name)
    except InvalidDriver as exc:
        ctx.out.data(_refused(_target(cls), exc))
        raise CliError(str(exc), ExitCode.FAILED) from None
    report = examine(name, cls, capabilities)
    ok = report.completes_anything()
    ctx.out.data({**report.to_dict(), "ok": ok})
    ctx.out.result(f"driver {report.target}: capabilities verified")
    _print_report(ctx, report)
    _require_strategy(name, report)
    return ExitCode.OK


def _refused(target: str, exc: InvalidDriver) -> dict[str, Any]:
    """``check-driver --json`` of a driver that fails verification (``problems``: deprecated)."""
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415

    return with_deprecated(
        "check-driver",
        {
            "target": target,
            "ok": False,
            "capability_problems": {k: list(v) for k, v in exc.problems.items()},
        },
    )


def _print_report(ctx: Context, report: DriverReport) -> None:
    ctx.out.result(f"  capabilities: {', '.join(report.capabilities)}")
    ctx.out.result("strategies it completes:")
    ctx.out.result("\n".join(_strategies_text(report)))
    ctx.out.result(f"registry tags: {', '.join(report.tags) or 'none'}")


def _require_strategy(name: str, report: DriverReport) -> None:
    if not report.completes_anything():
        needs = "; ".join(f"{w}: {' + '.join(n)}" for w, n in report.missing().items())
        raise CliError(
            f"driver '{name}' ({report.target}) completes no backup or restore strategy;"
            f" it would need: {needs}",
            ExitCode.FAILED,
        )


def _check_backend(args: argparse.Namespace, ctx: Context) -> int:
    """``check-driver --backend NAME``: build, verify and run the scratch-volume checks."""
    # Imported here: the suite brings in hypothesis and the file and POSIX drivers.
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415
    from pieceworks.common_algorithms.opening import load_driver  # noqa: PLC0415
    from pieceworks.testing.runner import (  # noqa: PLC0415
        BackendHarness,
        run_checks,
        scratch_problem,
    )

    section = ctx.config.backend(args.backend)
    driver = load_driver(section)  # ConfigError: constructor vs options
    name = section.name
    try:
        capabilities = verify_driver(driver, name)
    except InvalidDriver as exc:
        ctx.out.data({**_refused(_target(type(driver)), exc), "backend": name})
        raise CliError(f"{section.origin}: {exc}", ExitCode.FAILED) from None
    report = examine(name, driver, capabilities)
    report = DriverReport(**{**report.__dict__, "target": _target(type(driver))})
    ctx.out.result(f"backend '{name}' ({report.target}): built from {section.origin}")
    ctx.out.result("  capabilities verified")
    _print_report(ctx, report)
    why_not = scratch_problem(driver)
    results = [] if why_not else run_checks(BackendHarness(driver), writes=False)
    failed = [r for r in results if r.result == "failed"]
    ok = report.completes_anything() and not failed
    ctx.out.data(
        with_deprecated(
            "check-driver",
            {
                **report.to_dict(),
                "backend": name,
                "ok": ok,
                "checks": [r.to_dict() for r in results],
                "checks_skipped_reason": why_not,
            },
        )
    )
    if why_not:
        ctx.out.result(f"conformance checks: not run: {why_not}")
    else:
        ctx.out.result("conformance checks (on scratch volumes pwt-..., removed afterwards):")
        for r in results:
            detail = f": {r.message}" if r.message else ""
            ctx.out.result(f"  {r.result:<14} {r.capability}: {r.check}{detail}")
    _require_strategy(name, report)
    if failed:
        raise CliError(
            f"backend '{name}' fails {len(failed)} conformance check(s): "
            + ", ".join(r.check for r in failed),
            ExitCode.FAILED,
        )
    return ExitCode.OK
