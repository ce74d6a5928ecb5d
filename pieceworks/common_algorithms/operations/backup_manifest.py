"""The backup step that writes the manifest: the moment the backup comes to exist.

`WriteManifest` builds the `Manifest` from the transfer result and the plan
(`plan_stats`), checks (for a run resumed in another process) that its
chunks are still stored, and writes it last and atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.encryption_lock import require_still_plain
from pieceworks.common_algorithms.format.backup_pipeline import unstored_chunks
from pieceworks.common_algorithms.format.manifest import Manifest, write_manifest
from pieceworks.common_algorithms.gc.leases import ChunksCollected, lease_renewed
from pieceworks.common_algorithms.operations.backup_step import BackupTask
from pieceworks.common_algorithms.operations.guard import guard_stats
from pieceworks.common_algorithms.operations.plan import Plan
from pieceworks.common_algorithms.operations.requests import BackupRequest
from pieceworks.failpoints import failpoint
from pieceworks.protocols import ChunkRef, IObjectStore
from pieceworks.protocols.chunk_list import chunk_list_from_json
from pieceworks.protocols.chunks import chunk_key

__all__ = ["WriteManifest", "plan_stats"]


def plan_stats(plan: Plan, strategy: str) -> dict[str, str]:
    """What a manifest records of the plan (shown by ``pieceworks show``).

    ``reason``: why `strategy` could run; ``enhancers``: its enhancers,
    comma-separated; ``plan``: every strategy considered as compact JSON
    ``[[name, eligible, reason], ...]``.
    """
    chosen = next((s for s in plan.strategies if s.name == strategy), None)
    out = {
        "plan": json.dumps(
            [[s.name, s.eligible, s.reason] for s in plan.strategies], separators=(",", ":")
        )
    }
    if chosen is not None:
        out["reason"] = chosen.reason
        out["enhancers"] = ",".join(chosen.enhancers)
    return out


class WriteManifest(BackupTask):
    """Write the backup's manifest: the moment the backup comes to exist."""

    def __init__(
        self,
        backend: Backend,
        store: Store,
        request: BackupRequest,
        prefix: str,
        plan: Plan | None = None,
    ) -> None:
        super().__init__(
            "write-manifest",
            backend,
            store,
            request,
            prefix,
            provides="result",
            requires={"attempt": "attempt", "transfer": "transfer", "lease": "lease"},
        )
        self.plan = plan

    def execute(
        self, attempt: dict[str, Any], transfer: dict[str, Any], lease: dict[str, str]
    ) -> dict[str, Any]:
        # the columns form; a result persisted by an earlier version holds rows
        chunks = chunk_list_from_json(transfer["chunks"])
        failed = list(attempt.get("failed", []))
        stats: dict[str, int | str] = {
            k: int(transfer[k])
            for k in ("bytes_read", "bytes_stored", "bytes_through_manager")
            if transfer.get(k) is not None
        }
        if failed:
            stats["fallbacks"] = "; ".join(f"{f['strategy']}: {f['error']}" for f in failed)
            stats["failed_strategies"] = json.dumps(failed, separators=(",", ":"))
        if self.request.in_use and self.request.force:
            stats["forced"] = "read while in use"
        if self.plan is not None:
            stats.update(plan_stats(self.plan, str(attempt["strategy"])))
        guard = transfer.get("guard")
        stats.update(guard_stats(guard))
        notes = [str(n) for n in transfer.get("notes") or ()]
        if notes:
            stats["warnings"] = json.dumps(notes, separators=(",", ":"))
        manifest = Manifest(
            backup_id=self.request.backup_id,
            volume_id=self.request.volume_id,
            backend=self.backend.name,
            size=int(transfer["size"]),
            chunk_size=self.request.chunk_size,
            codec=str(transfer.get("codec") or self.request.codec),
            chunks=chunks,
            created=time.time(),
            strategy=str(attempt["strategy"]),
            parent=transfer.get("parent"),
            change_token=transfer.get("change_token"),
            incremental=self.request.incremental,
            stats=stats,
            labels=self.request.labels,
            enhancers_used=dict(transfer.get("enhancers_used") or {}),
        )
        failpoint("backup.before-manifest")
        with lease_renewed(self.store.objects, self.request.backup_id, lease["token"]) as resumed:
            if resumed:  # another process stored the chunks, and its lease was dead meanwhile
                _require_stored(self.store.objects, self.request.backup_id, chunks)
            require_still_plain(self.store.name, self.store.objects, before_data=False)
            write_manifest(self.store.objects, manifest)
        failpoint("backup.manifest-written")
        return {
            "backup_id": manifest.backup_id,
            "volume_id": manifest.volume_id,
            "backend": manifest.backend,
            "store": self.store.name,
            "strategy": manifest.strategy,
            "failed_strategies": failed,
            "size": manifest.size,
            "bytes_read": int(transfer.get("bytes_read", 0)),
            "bytes_stored": int(transfer.get("bytes_stored", 0)),
            "bytes_through_manager": int(transfer.get("bytes_through_manager", 0)),
            "chunks_total": len(chunks),
            "chunks_new": int(transfer.get("chunks_new", 0)),
            "holes": int(transfer.get("holes", 0)),
            "transfer_seconds": float(transfer.get("seconds", 0.0)),
            "incremental": manifest.incremental,
            "parent_id": manifest.parent,
            "parent": manifest.parent,  # the deprecated old name (jobs show's result)
            "enhancers_used": dict(manifest.enhancers_used),
            "guard": guard,
            "notes": notes,
        }


def _require_stored(objects: IObjectStore, backup_id: str, chunks: Sequence[ChunkRef]) -> None:
    """`ChunksCollected` unless every chunk of `chunks` is stored with its recorded size.

    For a manifest written by a run resumed in another process (see
    `pieceworks.common_algorithms.gc.leases.reclaim_lease`): while the
    process that stored the chunks was dead, a garbage collection may have
    deleted them. Batched size queries (`unstored_chunks`).
    """
    missing = [chunk_key(digest) for digest, _, _, _ in unstored_chunks(objects, [chunks])]
    if missing:
        raise ChunksCollected(
            f"backup {backup_id!r} was resumed after the run storing its chunks died, and"
            f" {len(missing)} of its {len(set(c.digest for c in chunks))} chunks are no longer"
            f" stored as recorded (first: {missing[0]}): a garbage collection removed them"
            " meanwhile. No manifest was written"
        )
