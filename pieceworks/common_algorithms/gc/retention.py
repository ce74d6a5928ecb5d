"""The retention policy of ``pieceworks forget``: which backups to keep, and why.

The rules are restic's (``internal/restic/snapshot_policy.go``), applied to
each group of backups on its own (``forget`` groups by volume):

* backups are taken newest first (by `created`, then by id);
* each rule (``last``, ``hourly``, ``daily``, ``weekly``, ``monthly``,
  ``yearly``) has a count N and a bucket: ``last`` puts every backup in a
  bucket of its own, ``daily`` the backups of one calendar day, ``weekly``
  of one ISO week, and so on. Walking newest first, a backup that opens a new
  bucket of a rule with count left is kept by that rule (the rule's count
  goes down by one). N = -1 means no limit;
* if a rule still has count left when the walk reaches the group's oldest
  backup, that backup is kept too (the longest history the counts allow);
* a backup no rule keeps is removed;
* an empty policy (every count 0) keeps everything.

A group is what restic calls a host and its paths: one series of backups of
the same thing. ``forget`` groups by backend and volume, since a volume id
names a volume on its backend only (two backends may each have a ``db``).

So with any rule the newest backup of a group is always kept: ``forget``
never removes a group's last backup. Calendar buckets are taken in `tz`
(UTC unless given), so the result does not depend on the host's zone.

This module is pure: it decides, never touches a store. Written here
rather than taken from a library because no Python package implements
restic's semantics (the oldest-backup rule in particular), and ``forget``
must behave as restic users expect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

__all__ = [
    "RULES",
    "Candidate",
    "Decision",
    "Group",
    "KeepPolicy",
    "RetentionPlan",
    "apply_policy",
]

#: The rules in the order restic evaluates them (and reasons are listed).
RULES: Final = ("last", "hourly", "daily", "weekly", "monthly", "yearly")

Bucket = Callable[[datetime, int], int]

#: What a candidate is grouped by: a name, or a tuple of names (``(backend, volume)``).
Group = str | tuple[str, ...]


def _hourly(d: datetime, _: int) -> int:
    return d.year * 1_000_000 + d.month * 10_000 + d.day * 100 + d.hour


def _daily(d: datetime, _: int) -> int:
    return d.year * 10_000 + d.month * 100 + d.day


def _weekly(d: datetime, _: int) -> int:
    year, week, _day = d.isocalendar()
    return year * 100 + week


def _monthly(d: datetime, _: int) -> int:
    return d.year * 100 + d.month


def _yearly(d: datetime, _: int) -> int:
    return d.year


def _last(_: datetime, position: int) -> int:
    return position


_BUCKETS: Final[dict[str, Bucket]] = {
    "last": _last,
    "hourly": _hourly,
    "daily": _daily,
    "weekly": _weekly,
    "monthly": _monthly,
    "yearly": _yearly,
}


@dataclass(frozen=True)
class KeepPolicy:
    """How many backups each rule keeps per group: N >= 0, or -1 for all.

    `ValueError` (naming the rule) for anything else.
    """

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise ValueError(
                    f"keep-{f.name} must be a whole number >= 0, or -1 for all, not {value!r}"
                )

    def count(self, rule: str) -> int:
        """The count of `rule` (one of `RULES`)."""
        return int(getattr(self, rule))

    @property
    def empty(self) -> bool:
        """Whether no rule is set (such a policy keeps everything)."""
        return all(self.count(r) == 0 for r in RULES)

    def describe(self) -> str:
        """``keep 3 latest, 7 daily, all monthly backups`` (or ``keep everything``)."""
        parts = [
            f"{'all' if n == -1 else n} {'latest' if rule == 'last' else rule}"
            for rule in RULES
            if (n := self.count(rule)) != 0
        ]
        return f"keep {', '.join(parts)} backups" if parts else "keep everything (empty policy)"

    def to_dict(self) -> dict[str, int]:
        """``{"keep_last": 3, ...}``: every rule, 0 when unset."""
        return {f"keep_{rule}": self.count(rule) for rule in RULES}


@dataclass(frozen=True)
class Candidate:
    """A backup the policy decides on: its id, Unix creation time and group (see `Group`)."""

    backup_id: str
    created: float
    group: Group


@dataclass(frozen=True)
class Decision:
    """Keep or remove one backup; `reasons` are the rules that keep it (empty if removed)."""

    candidate: Candidate
    keep: bool
    reasons: tuple[str, ...]

    @property
    def backup_id(self) -> str:
        return self.candidate.backup_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.candidate.backup_id,
            "created": self.candidate.created,
            "keep": self.keep,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class RetentionPlan:
    """The decisions for every candidate: groups in name order, newest first in each."""

    policy: KeepPolicy
    decisions: tuple[Decision, ...]

    @property
    def keep(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.keep)

    @property
    def remove(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if not d.keep)

    def groups(self) -> dict[Group, tuple[Decision, ...]]:
        """Decisions by group (insertion order: group names sorted)."""
        out: dict[Group, list[Decision]] = {}
        for d in self.decisions:
            out.setdefault(d.candidate.group, []).append(d)
        return {g: tuple(ds) for g, ds in out.items()}


def _decide_group(newest_first: list[Candidate], policy: KeepPolicy, tz: tzinfo) -> list[Decision]:
    if policy.empty:
        return [Decision(c, True, ("empty policy",)) for c in newest_first]
    counts = {rule: policy.count(rule) for rule in RULES}
    last_seen: dict[str, int | None] = dict.fromkeys(RULES)
    oldest = len(newest_first) - 1
    decisions = []
    for position, cand in enumerate(newest_first):
        when = datetime.fromtimestamp(cand.created, tz)
        reasons = []
        for rule in RULES:
            if counts[rule] == 0:
                continue
            value = _BUCKETS[rule](when, position)
            if value != last_seen[rule] or position == oldest:
                last_seen[rule] = value
                if counts[rule] > 0:
                    counts[rule] -= 1
                reasons.append(rule)
        decisions.append(Decision(cand, bool(reasons), tuple(reasons)))
    return decisions


def _sort_key(group: Group) -> tuple[str, ...]:
    """`group` as a tuple, so that groups of either form sort together."""
    return (group,) if isinstance(group, str) else group


def apply_policy(
    candidates: Iterable[Candidate], policy: KeepPolicy, *, tz: tzinfo = UTC
) -> RetentionPlan:
    """Decide, group by group, which candidates `policy` keeps (see the module docstring).

    Every candidate gets exactly one `Decision`. Candidates with the same
    `backup_id` are a `ValueError` (one backup cannot be decided twice).
    """
    by_group: dict[Group, list[Candidate]] = {}
    seen: set[str] = set()
    for c in candidates:
        if c.backup_id in seen:
            raise ValueError(f"backup {c.backup_id!r} given twice")
        seen.add(c.backup_id)
        by_group.setdefault(c.group, []).append(c)
    decisions: list[Decision] = []
    for group in sorted(by_group, key=_sort_key):
        newest_first = sorted(by_group[group], key=lambda c: (c.created, c.backup_id), reverse=True)
        decisions += _decide_group(newest_first, policy, tz)
    return RetentionPlan(policy, tuple(decisions))
