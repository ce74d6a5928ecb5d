"""The verify template: check every chunk of a backup against its hash.

Verification reads the store only (no backend is involved) and reports every
missing or damaged chunk with its volume offset, not just the first. A chunk
object whose content does not match its hash is moved aside to
``quarantine/`` (unless asked not to), so that the next backup holding that
data stores it again and the store heals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskflow import task
from taskflow.patterns import linear_flow

from pieceworks.common_algorithms.backend import Store
from pieceworks.common_algorithms.format.chunk_pipeline import ChunkProblem, verify_chunks
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.common_algorithms.gc.leases import read_lease
from pieceworks.common_algorithms.progress import ProgressReporter
from pieceworks.common_algorithms.runner import EngineOptions, ProgressCallback, run_flow
from pieceworks.protocols import CorruptionError, validate_id
from pieceworks.protocols.chunks import chunk_key

__all__ = ["MAX_NAMED_PROBLEMS", "VerifiedOrFail", "VerifyOutcome", "verify", "verify_flow"]

#: How many problems a failed verify job's error names (all are in its result).
MAX_NAMED_PROBLEMS = 5


class VerifyBackup(task.Task):
    """Fetch and check every distinct chunk of one backup."""

    def __init__(self, store: Store, backup_id: str, quarantine: bool = True) -> None:
        super().__init__(name=f"verify-{backup_id}", provides=f"verify-{backup_id}.result")
        self.store, self.backup_id, self.quarantine = store, backup_id, quarantine

    def execute(self) -> dict[str, Any]:
        # A read lease from before the manifest is read: a concurrent delete's
        # collection defers instead of making chunks look missing (see gc).
        with read_lease(self.store.objects, "verify", [self.backup_id]):
            manifest = read_manifest(self.store.objects, self.backup_id)
            report = verify_chunks(
                self.store.objects,
                manifest,
                progress=ProgressReporter(self, manifest.data_bytes),
                quarantine=self.quarantine,
            )
        return {
            "backup_id": self.backup_id,
            "store": self.store.name,
            "ok": report.ok,
            "chunks_checked": report.chunks_checked,
            "bytes_checked": report.bytes_checked,
            "problems": [
                {"offset": p.offset, "digest": p.digest, "reason": p.reason, "detail": p.detail}
                for p in report.problems
            ],
            "quarantined": list(report.quarantined),
        }


class VerifiedOrFail(task.Task):
    """Fail with `CorruptionError` if the verification found a missing or damaged chunk.

    For jobs, whose caller reads success or failure (``jobs watch`` exits 1,
    ``wait_for`` raises ``JobFailed``): the error names the backup, how many
    chunks failed, and the first `MAX_NAMED_PROBLEMS` with their volume
    offset; the verification's result (every problem) stays persisted.
    """

    def __init__(self, backup_id: str) -> None:
        super().__init__(
            name=f"verify-{backup_id}.verdict", requires=[f"verify-{backup_id}.result"]
        )
        self.backup_id = backup_id

    def execute(self, *args: Any, **kwargs: Any) -> None:
        result = kwargs[f"verify-{self.backup_id}.result"]
        if result["ok"]:
            return
        problems = result["problems"]
        named = "; ".join(
            f"offset {p['offset']}: chunk {chunk_key(p['digest'])} {p['reason']}"
            for p in problems[:MAX_NAMED_PROBLEMS]
        )
        more = len(problems) - MAX_NAMED_PROBLEMS
        raise CorruptionError(
            f"backup {self.backup_id}: {len(problems)} missing or damaged chunk(s): {named}"
            + (f"; and {more} more" if more > 0 else ""),
            offset=problems[0]["offset"] if problems else None,
        )


def verify_flow(
    store: Store, backup_id: str, *, quarantine: bool = True, fail_on_problems: bool = False
) -> linear_flow.Flow:
    """The flow verifying `backup_id`; provides ``verify-<id>.result``.

    With `fail_on_problems` (a job's flow) a last step ``verify-<id>.verdict``
    fails the flow with `CorruptionError` when a chunk is missing or damaged.
    """
    validate_id("backup id", backup_id)
    flow = linear_flow.Flow(f"verify-{backup_id}.flow").add(
        VerifyBackup(store, backup_id, quarantine)
    )
    if fail_on_problems:
        flow.add(VerifiedOrFail(backup_id))
    return flow


@dataclass(frozen=True)
class VerifyOutcome:
    """Whether every chunk of a backup is intact, each problem found, what was moved aside."""

    backup_id: str
    store: str
    ok: bool
    chunks_checked: int
    bytes_checked: int
    problems: tuple[ChunkProblem, ...]
    quarantined: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "store": self.store,
            "ok": self.ok,
            "chunks_checked": self.chunks_checked,
            "bytes_checked": self.bytes_checked,
            "problems": [
                {"offset": p.offset, "digest": p.digest, "reason": p.reason, "detail": p.detail}
                for p in self.problems
            ],
            "quarantined": list(self.quarantined),
        }


def verify(
    store: Store,
    backup_id: str,
    *,
    options: EngineOptions | None = None,
    progress: ProgressCallback | None = None,
    quarantine: bool = True,
) -> VerifyOutcome:
    """Verify `backup_id`; `BackupNotFound` if the store has no such backup.

    With `quarantine` (the default) every chunk object whose content does
    not match its hash is moved aside (`quarantine_chunk`); the outcome's
    `quarantined` lists where to.
    """
    result = run_flow(
        verify_flow(store, backup_id, quarantine=quarantine),
        operation="verify",
        backend="-",
        prefix=f"verify-{backup_id}",
        options=options,
        progress=progress,
    )
    return VerifyOutcome(
        backup_id=result["backup_id"],
        store=result["store"],
        ok=result["ok"],
        chunks_checked=result["chunks_checked"],
        bytes_checked=result["bytes_checked"],
        problems=tuple(
            ChunkProblem(p["offset"], p["digest"], p["reason"], p["detail"])
            for p in result["problems"]
        ),
        quarantined=tuple(result.get("quarantined", ())),
    )
