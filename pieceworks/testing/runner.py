"""Run the suite's checks without pytest: on a harness, or on a configured backend.

`run_checks` runs every registered check (`CHECKS`) against a harness and
returns one `CheckResult` each. `BackendHarness` turns a configured backend
into a harness when it can create and remove a scratch volume (stream-in,
plus a ``delete_volume(volume_id)`` method); it cannot write in place, so
checks that need it (`Check.writes`) are left out: what stays is the
non-destructive subset ``pieceworks check-driver --backend`` runs, touching
only the scratch volumes it creates (``pwt-...``) and removes.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from pieceworks.protocols import IStreamIn, VolumeRef
from pieceworks.testing import allocated_extents as _allocated_extents  # noqa: F401  (registers)
from pieceworks.testing import changed_blocks as _changed_blocks  # noqa: F401
from pieceworks.testing import end_to_end as _end_to_end  # noqa: F401
from pieceworks.testing import offload as _offload  # noqa: F401
from pieceworks.testing import snapshot as _snapshot  # noqa: F401
from pieceworks.testing import stream_in as _stream_in  # noqa: F401
from pieceworks.testing import stream_out as _stream_out  # noqa: F401
from pieceworks.testing.harness import IDriverHarness
from pieceworks.testing.scratch import CHECKS, Check, NotApplicable, Scratch

__all__ = ["BackendHarness", "CheckResult", "run_checks", "scratch_problem"]


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ``passed``, ``failed`` or ``not applicable``, and why."""

    check: str
    capability: str
    result: str
    message: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``check-driver --json``): ``outcome`` is `result`.

        ``check-driver --json`` adds ``result``, its deprecated old name
        (`pieceworks.common_algorithms.json_fields`).
        """
        return {
            "check": self.check,
            "capability": self.capability,
            "outcome": self.result,
            "message": self.message,
            "seconds": round(self.seconds, 3),
        }


def scratch_problem(driver: object) -> str | None:
    """Why a configured backend cannot hold the suite's scratch volumes, or None."""
    if not IStreamIn.providedBy(driver):
        return "the backend cannot create a volume (no stream-in)"
    if not callable(getattr(driver, "delete_volume", None)):
        return "the backend cannot remove a volume (no delete_volume method)"
    return None


@implementer(IDriverHarness)
class BackendHarness:
    """A configured backend's driver as a harness: volumes by stream-in, no in-place write.

    Check `scratch_problem` first: the driver must provide stream-in and a
    ``delete_volume(volume_id)`` method. Volume sizes are multiples of
    `size_unit` (4096 by default, which block devices and qcow2 accept).
    """

    def __init__(self, driver: object, size_unit: int = 4096) -> None:
        self.driver, self.size_unit = driver, size_unit

    def make_driver(self) -> object:
        return self.driver

    def create_volume(self, volume_id: str, data: bytes) -> None:
        writer = IStreamIn(self.driver).open_write(VolumeRef(volume_id), len(data))
        try:
            writer.write_at(0, data)
        except BaseException:
            writer.abort()
            raise
        writer.commit()

    def write(self, volume_id: str, offset: int, data: bytes) -> None:
        raise NotImplementedError("a configured backend has no in-place write for the suite")

    def delete_volume(self, volume_id: str) -> None:
        getattr(self.driver, "delete_volume")(volume_id)  # noqa: B009 (checked by scratch_problem)


def run_checks(
    harness: IDriverHarness, *, writes: bool = True, checks: list[Check] | None = None
) -> list[CheckResult]:
    """Run `checks` (default: all; without those that write in place unless `writes`).

    Each check gets a fresh `Scratch` in its own temporary directory and
    removes its volumes afterwards; a failed cleanup fails the check.
    """
    results: list[CheckResult] = []
    for check in checks if checks is not None else CHECKS:
        if check.writes and not writes:
            continue
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="pieceworks-check-") as workdir:
            scratch = Scratch(harness, workdir)
            try:
                check.func(scratch)
                result, message = "passed", ""
            except NotApplicable as exc:
                result, message = "not applicable", str(exc).removeprefix("not applicable: ")
            except AssertionError as exc:
                result, message = "failed", str(exc)
            except Exception as exc:
                result, message = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                problems = scratch.cleanup()
            if problems and result != "failed":
                result, message = "failed", "cleanup: " + "; ".join(problems)
        results.append(
            CheckResult(check.name, check.capability, result, message, time.monotonic() - started)
        )
    return results
