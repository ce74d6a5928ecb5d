"""The ``--json`` fields that were renamed, and their old names still printed beside them.

A field name means one thing of one JSON type in every command's document
(STYLE.md: ``<thing>_id`` for ids, ``<thing>_ids`` for lists of them,
``bytes_<verb>``, ``chunks_<verb>`` and ``<things>_<verb>`` for counts,
``seconds``, Unix times). Where a command printed a name that another
command uses for something else (``removed``: a count in ``recover``, a list
of backup ids in ``forget``, true in ``key remove``), or that breaks those
conventions (``parent`` for a backup id), the document now carries the
consistent field, and the old one keeps its old shape beside it until
`REMOVED_IN`, so that no script breaks silently. docs/cli.md lists them
(`DEPRECATED_FIELDS` is the list it must match).

Nothing of ours is imported here: every layer that builds a document may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEPRECATED_FIELDS", "REMOVED_IN", "DeprecatedField", "with_deprecated"]

#: The release that stops printing the deprecated fields.
REMOVED_IN = "0.2.0"


@dataclass(frozen=True)
class DeprecatedField:
    """A field of ``pieceworks <command> --json`` also printed by its old name until `REMOVED_IN`.

    `path` is the old field: dotted through objects, ``[]`` after a name
    steps into each row of that array (``volumes[].backups``). `replaced_by`
    is the field that replaces it, in the same object. `shape` says what the
    old field holds. With `same_value` the old field is a copy of
    `replaced_by` (`with_deprecated` adds it); otherwise the document's
    builder keeps writing the old field as it was.
    """

    command: str
    path: str
    replaced_by: str
    shape: str
    same_value: bool = True

    @property
    def name(self) -> str:
        """The old field's own name (the last step of `path`)."""
        return self.path.rsplit(".", 1)[-1]


def _d(command: str, path: str, replaced_by: str, shape: str, same: bool = True) -> DeprecatedField:
    return DeprecatedField(command, path, replaced_by, shape, same)


_IDS = "list of backup ids"
_LEASES = "list of leases, each {key, owner, state, stale, reason, age_seconds}"

#: Every deprecated field, by command (docs/cli.md, "Deprecated JSON fields").
DEPRECATED_FIELDS: tuple[DeprecatedField, ...] = (
    _d("backup", "parent", "parent_id", "backup id or null"),
    _d("list", "parent", "parent_id", "backup id or null"),
    _d("show", "parent", "parent_id", "backup id or null"),
    _d("jobs show", "result.parent", "parent_id", "backup id or null (a backup job's)"),
    _d("jobs watch", "result.parent", "parent_id", "backup id or null (a backup job's)"),
    _d("jobs list", "jobs[].result.parent", "parent_id", "backup id or null (a backup job's)"),
    _d("show", "plan", "strategies", "list of {name, eligible, reason}"),
    _d("demo", "volume", "volume_id", "volume id"),
    _d("demo", "restored_volume", "restored_volume_id", "volume id"),
    _d("demo", "changed_bytes", "bytes_changed", "integer"),
    _d("demo", "backups", "backup_ids", _IDS),
    _d("restore", "target", "target_kind", "file or block-device (with --to-file)"),
    _d("replicate", "verified", "verification", "how the copy was checked, in words"),
    _d("jobs cancel", "cancelled", "outcome", "cancelled or requested"),
    _d("jobs migrate", "persistence", "migrated", "the string migrated", False),
    _d("recover", "removed", "items_removed", "integer"),
    _d("recover", "kept", "items_kept", "integer"),
    _d("recover", "failed", "items_failed", "integer"),
    _d("forget", "kept", "kept_backup_ids", _IDS),
    _d("forget", "removed", "removed_backup_ids", _IDS),
    _d("forget", "would_remove", "would_remove_backup_ids", _IDS),
    _d("forget", "prune.deferred_by", "deferring_backup_ids", _IDS),
    _d("forget", "prune.blockers", "blocking_leases", _LEASES),
    _d("prune", "deferred_by", "deferring_backup_ids", _IDS),
    _d("prune", "blockers", "blocking_leases", _LEASES),
    _d("delete", "deferred_by", "deferring_backup_ids", _IDS),
    _d("delete", "blockers", "blocking_leases", "string (one line naming the leases)", False),
    _d("stats", "volumes[].backups", "backups_total", "integer"),
    _d("stats", "total.backups", "backups_total", "integer"),
    _d("stats", "manifests_unreadable", "unreadable_backup_ids", _IDS),
    _d("diff", "backup_id_a", "backup_a_id", "backup id (ID1)"),
    _d("diff", "backup_id_b", "backup_b_id", "backup id (ID2)"),
    _d("copy", "backups_copied", "copied_backup_ids", _IDS),
    _d("copy", "backups_skipped", "skipped_backup_ids", _IDS),
    _d("key remove", "removed", "key_id", "true (the exit code says whether it was)", False),
    _d("drivers", "stores", "store_drivers", "list of {name, target, capabilities}"),
    _d("drivers", "drivers[].problems", "capability_problems", "object: capability -> messages"),
    _d("check-driver", "problems", "capability_problems", "object: capability -> messages"),
    _d("check-driver", "checks[].result", "outcome", "passed, failed or not applicable"),
    _d("check-driver", "checks_skipped", "checks_skipped_reason", "string or null: why not run"),
    _d("conductor --events", "job", "job_id", "job id"),
    _d("conductor --events", "who", "conductor", "the conductor's name"),
    _d("conductor --events", "t", "time", "Unix time"),
    _d("conductor --events", "why", "reason", "string: why the step ran here"),
)


def _objects(doc: Any, steps: list[str]) -> list[dict[str, Any]]:
    """The objects of `doc` that `steps` (all but the last step of a path) lead to."""
    found: list[Any] = [doc]
    for step in steps:
        rows = step.endswith("[]")
        name = step.removesuffix("[]")
        nxt: list[Any] = []
        for obj in found:
            value = obj.get(name) if isinstance(obj, Mapping) else None
            if rows and isinstance(value, list):
                nxt.extend(value)
            elif not rows and value is not None:
                nxt.append(value)
        found = nxt
    return [o for o in found if isinstance(o, dict)]


def with_deprecated(command: str, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` (changed in place, and returned) with `command`'s deprecated copies added.

    Each `DeprecatedField` of `command` with `same_value` whose
    `replaced_by` is in the object its path leads to gets its old name
    right after it, holding the same value. A document without the new
    field (an older shape) is left as it is.
    """
    for dep in DEPRECATED_FIELDS:
        if dep.command != command or not dep.same_value:
            continue
        *steps, _ = dep.path.split(".")
        for obj in _objects(doc, steps):
            if dep.replaced_by in obj and dep.name not in obj:
                items = list(obj.items())
                at = [k for k, _ in items].index(dep.replaced_by) + 1
                items.insert(at, (dep.name, obj[dep.replaced_by]))
                obj.clear()
                obj.update(items)
    return doc
