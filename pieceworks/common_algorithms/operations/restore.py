"""The restore template: offload (the backend pulls) or stream-in, with fallback.

    outcome = restore(backend, store, RestoreRequest("bk-1", volume_id="vol-2"))

The restore holds a read lease on the store while it reads the backup
(`gc.read_lease`): deleting the backup meanwhile removes its manifest but
defers collecting its chunks until the restore is done. Every chunk's
sha256 is checked before it is written; a damaged chunk stops
the restore with `CorruptionError` naming its offset, and the target volume
is left as it was (the writer is aborted, never committed). Any backup
restores through any backend that has stream-in or pull-from-object-store.
An existing target volume is replaced only when the request says
`overwrite`; otherwise the restore is refused before anything is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from taskflow import task
from taskflow.patterns import linear_flow

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.format.chunk_pipeline import restore_chunks
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.common_algorithms.gc.leases import read_lease
from pieceworks.common_algorithms.operations.fallback import StrategyFallback
from pieceworks.common_algorithms.operations.plan import Attempt, Plan
from pieceworks.common_algorithms.operations.planning import plan_restore
from pieceworks.common_algorithms.operations.requests import (
    RestoreRequest,
    decode_request,
    request_fields,
)
from pieceworks.common_algorithms.operations.targets import check_target, require_still_absent
from pieceworks.common_algorithms.placement import (
    DataStep,
    RemoteStep,
    declining,
    host,
    run_data_step,
)
from pieceworks.common_algorithms.progress import ProgressReporter
from pieceworks.common_algorithms.runner import EngineOptions, ProgressCallback, run_flow
from pieceworks.failpoints import failpoint
from pieceworks.protocols import IStreamIn, OperationCancelled, VolumeRef
from pieceworks.protocols.stopping import stop_requested

__all__ = ["RestoreOutcome", "RestoreWrite", "restore", "restore_flow"]


class CheckBackup(task.Task):
    """Check up front, before anything is written: the backup exists, the target is free.

    An unknown or unreadable backup fails here; so does a target volume
    that exists when the request does not say `overwrite` (`VolumeExists`).
    Provides the backup's size and the size of the volume to be replaced.
    """

    def __init__(
        self, backend: Backend, store: Store, request: RestoreRequest, prefix: str
    ) -> None:
        super().__init__(name=f"{prefix}.check-backup", provides=f"{prefix}.backup")
        self.backend, self.store, self.request = backend, store, request

    def execute(self) -> dict[str, Any]:
        m = read_manifest(self.store.objects, self.request.backup_id)
        replaced = check_target(
            self.backend,
            self.request.volume_id,
            overwrite=self.request.overwrite,
            operation="restore",
        )
        return {
            "size": m.size,
            "chunks": len(m.chunks),
            "volume_id": m.volume_id,
            "replaced_size": replaced,
        }


class RestoreVolume(DataStep, task.Task):
    """Fill the target volume by the current strategy; abort it on any failure.

    The work (`write`) runs on a worker that serves the backend when the
    conductor has a dispatcher and a worker takes it (as `RestoreWrite`),
    else in process. Either way this step holds a read lease on the store
    (`gc.read_lease`, renewed here) from before the manifest is read until
    the last chunk is written, so that deleting the backup meanwhile defers
    its garbage collection instead of failing the restore.
    """

    #: The task whose notifier gets the progress events (a worker's `RestoreWrite`).
    reporter: task.Task | None = None

    def __init__(
        self, backend: Backend, store: Store, request: RestoreRequest, prefix: str
    ) -> None:
        super().__init__(
            name=f"{prefix}.restore-volume",
            provides=f"{prefix}.result",
            rebind={"attempt": f"{prefix}.attempt", "checked": f"{prefix}.backup"},
        )
        self.backend, self.store, self.request = backend, store, request

    def execute(self, attempt: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
        arguments = {
            "backend": self.backend.name,
            "store": self.store.name,
            "request": request_fields(self.request),
            "attempt": attempt,
            "checked": checked,
        }
        # Before the manifest is read (here or on a worker) until the last chunk is:
        # a concurrent delete's collection defers instead of taking chunks (see gc).
        with read_lease(self.store.objects, "restore", [self.request.backup_id]):
            return run_data_step(
                self,
                RestoreWrite,
                self.backend.name,
                arguments,
                lambda: self.write(attempt, checked),
            )

    def write(self, attempt: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
        """Write the backup into the target volume by ``attempt["strategy"]``; the result."""
        started = time.monotonic()
        manifest = read_manifest(self.store.objects, self.request.backup_id)
        failpoint("restore.manifest-read")
        target = VolumeRef(self.request.volume_id)
        if not self.request.overwrite:  # CheckBackup found it free: is it still?
            require_still_absent(self.backend, target.volume_id, operation="restore")
        strategy = str(attempt["strategy"])
        if strategy == "offload":
            self.store.pull(self.backend, target, manifest.size, manifest.chunks)
            # The backend wrote every data chunk (holes stay zeros): it reported 0 B.
            written, through_manager = sum(c.length for c in manifest.chunks), 0
        else:
            driver = self.backend.use(IStreamIn)
            writer = driver.open_write(target, manifest.size)
            try:
                stats = restore_chunks(
                    self.store.objects,
                    manifest,
                    writer,
                    progress=ProgressReporter(self.reporter or self, manifest.size),
                )
                failpoint("restore.before-commit")
                if stop_requested():  # Ctrl-C or SIGTERM while this ran on another thread
                    raise OperationCancelled("restore interrupted")
            except BaseException:  # anything before the commit: nothing left in .incoming
                writer.abort()
                raise
            writer.commit()
            failpoint("restore.committed")
            written = through_manager = stats.bytes_written
        return {
            "backup_id": manifest.backup_id,
            "volume_id": target.volume_id,
            "backend": self.backend.name,
            "store": self.store.name,
            "strategy": strategy,
            "failed_strategies": list(attempt.get("failed", [])),
            "size": manifest.size,
            "replaced_size": checked.get("replaced_size"),
            "bytes_written": written,
            "bytes_through_manager": through_manager,
            "seconds": round(time.monotonic() - started, 6),
        }


class RestoreWrite(RemoteStep):
    """`RestoreVolume`'s work on a worker: built from its name, given names and values.

    `backend` and `store` are names opened from this host's configuration
    (`placement.host`); `request` holds `RestoreRequest`'s fields; `attempt`
    and `checked` are the results of the fallback retry and `CheckBackup`.
    """

    def work(  # type: ignore[override]
        self,
        backend: str,
        store: str,
        request: dict[str, Any],
        attempt: dict[str, Any],
        checked: dict[str, Any],
    ) -> dict[str, Any]:
        sections = host()
        with declining():
            step = RestoreVolume(
                sections.backend(backend),
                sections.store(store),
                decode_request(RestoreRequest, request),
                self.name,
            )
        step.reporter = self
        return self.observed(lambda: step.write(attempt, checked))


def _prefix(request: RestoreRequest) -> str:
    return f"restore-{request.backup_id}-to-{request.volume_id}"


def restore_flow(
    backend: Backend, store: Store, request: RestoreRequest, plan: Plan | None = None
) -> linear_flow.Flow:
    """The flow for `request`; provides ``restore-<backup>-to-<volume>.result``."""
    plan = (plan or plan_restore(backend, store, request)).require_eligible()
    p = _prefix(request)
    return linear_flow.Flow(p).add(
        CheckBackup(backend, store, request, p),
        linear_flow.Flow(
            f"{p}.strategies",
            retry=StrategyFallback(plan.eligible, name=f"{p}.fallback", provides=f"{p}.attempt"),
        ).add(RestoreVolume(backend, store, request, p)),
    )


@dataclass(frozen=True)
class RestoreOutcome:
    """What a restore did: strategy used, those that failed first, figures.

    `replaced_size` is the size in bytes of the volume the restore replaced
    (asked for with `overwrite`), None if it created the volume.
    """

    backup_id: str
    volume_id: str
    backend: str
    store: str
    strategy: str
    failed: tuple[Attempt, ...]
    plan: Plan
    size: int
    bytes_written: int
    bytes_through_manager: int
    seconds: float
    replaced_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "volume_id": self.volume_id,
            "backend": self.backend,
            "store": self.store,
            "strategy": self.strategy,
            "failed_strategies": [a.to_dict() for a in self.failed],
            "size": self.size,
            "replaced_size": self.replaced_size,
            "bytes_written": self.bytes_written,
            "bytes_through_manager": self.bytes_through_manager,
            "seconds": round(self.seconds, 3),
            "plan": self.plan.to_dict(),
        }


def restore(
    backend: Backend,
    store: Store,
    request: RestoreRequest,
    *,
    options: EngineOptions | None = None,
    progress: ProgressCallback | None = None,
) -> RestoreOutcome:
    """Restore `request.backup_id` from `store` into a volume of `backend`.

    Raise `VolumeExists` (before writing anything) if the target volume
    exists and `request.overwrite` is false, `BackupNotFound` for an
    unknown backup, `NoEligibleStrategy` if
    the backend can take no restore, `AllStrategiesFailed` (with each
    cause, e.g. a `CorruptionError` naming the offset) if all failed.
    """
    started = time.monotonic()
    plan = plan_restore(backend, store, request)
    p = _prefix(request)
    result = run_flow(
        restore_flow(backend, store, request, plan),
        operation="restore",
        backend=backend.name,
        prefix=p,
        options=options,
        progress=progress,
    )
    return RestoreOutcome(
        backup_id=result["backup_id"],
        volume_id=result["volume_id"],
        backend=result["backend"],
        store=result["store"],
        strategy=result["strategy"],
        failed=Attempt.from_rows(result["failed_strategies"]),
        plan=plan,
        size=result["size"],
        bytes_written=result["bytes_written"],
        bytes_through_manager=result["bytes_through_manager"],
        seconds=time.monotonic() - started,
        replaced_size=result.get("replaced_size"),
    )
