"""The forget policy keeps and removes backups exactly as restic's rules say.

Hypothesis draws groups of backups at random times and random policies; an
independent formulation of restic's rules (newest backup of each of the N
most recent buckets, plus the group's oldest while a rule has count left)
is the oracle. Worked examples pin the calendar buckets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pieceworks.common_algorithms.gc.retention import (
    RULES,
    Candidate,
    KeepPolicy,
    apply_policy,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
DAY = 86400.0

counts = st.integers(min_value=-1, max_value=6)
policies = st.builds(
    KeepPolicy,
    last=counts,
    hourly=counts,
    daily=counts,
    weekly=counts,
    monthly=counts,
    yearly=counts,
)
times = st.floats(min_value=T0, max_value=T0 + 800 * DAY, allow_nan=False)


@st.composite
def candidates(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(min_value=0, max_value=30))
    groups = draw(st.lists(st.sampled_from(["vol-a", "vol-b", "vol-c"]), min_size=n, max_size=n))
    # Coarse times make many backups share an hour or a day (and some the same second).
    stamps = draw(
        st.lists(
            st.one_of(times, st.integers(0, 400).map(lambda h: T0 + h * 3600.0)),
            min_size=n,
            max_size=n,
        )
    )
    pairs = enumerate(zip(groups, stamps, strict=True))
    return [Candidate(f"bk-{i:03d}", t, g) for i, (g, t) in pairs]


def _bucket(rule: str, c: Candidate, position: int) -> object:
    d = datetime.fromtimestamp(c.created, UTC)
    return {
        "last": position,
        "hourly": (d.year, d.month, d.day, d.hour),
        "daily": (d.year, d.month, d.day),
        "weekly": d.isocalendar()[:2],
        "monthly": (d.year, d.month),
        "yearly": d.year,
    }[rule]


def _oracle(group: list[Candidate], policy: KeepPolicy) -> dict[str, set[str]]:
    """Backup id -> rules keeping it, by a second formulation of restic's rules."""
    newest_first = sorted(group, key=lambda c: (c.created, c.backup_id), reverse=True)
    kept: dict[str, set[str]] = {}
    if policy.empty:
        return {c.backup_id: {"empty policy"} for c in newest_first}
    for rule in RULES:
        n = policy.count(rule)
        if n == 0:
            continue
        newest_of_bucket: dict[object, Candidate] = {}
        for position, c in enumerate(newest_first):
            newest_of_bucket.setdefault(_bucket(rule, c, position), c)
        chosen = list(newest_of_bucket.values())  # in newest-first order of the buckets
        if n != -1:
            chosen = chosen[:n]
        if newest_first and (n == -1 or len(newest_of_bucket) < n):
            chosen.append(newest_first[-1])
        for c in chosen:
            kept.setdefault(c.backup_id, set()).add(rule)
    return kept


@settings(max_examples=100, deadline=None)
@given(candidates(), policies)
def test_policy_matches_an_independent_formulation_of_restics_rules(
    cands: list[Candidate], policy: KeepPolicy
) -> None:
    """Per group, the kept backups and the rules keeping each are the oracle's."""
    plan = apply_policy(cands, policy)
    for group, decisions in plan.groups().items():
        expected = _oracle([c for c in cands if c.group == group], policy)
        got = {d.backup_id: set(d.reasons) for d in decisions if d.keep}
        assert got == expected


@settings(max_examples=100, deadline=None)
@given(candidates(), policies)
def test_every_backup_is_decided_once_and_each_group_keeps_its_newest(
    cands: list[Candidate], policy: KeepPolicy
) -> None:
    """Keep and remove partition the input; a group's newest backup is never removed."""
    plan = apply_policy(cands, policy)
    kept, removed = {d.backup_id for d in plan.keep}, {d.backup_id for d in plan.remove}
    assert kept | removed == {c.backup_id for c in cands} and not kept & removed
    assert len(plan.decisions) == len(cands)
    for group in {c.group for c in cands}:
        newest = max((c for c in cands if c.group == group), key=lambda c: (c.created, c.backup_id))
        assert newest.backup_id in kept
    for d in plan.remove:
        assert d.reasons == ()
    for d in plan.keep:
        assert d.reasons


@settings(max_examples=100, deadline=None)
@given(candidates(), policies, st.sampled_from(RULES))
def test_raising_a_count_never_removes_more(
    cands: list[Candidate], policy: KeepPolicy, rule: str
) -> None:
    """Monotone: keeping more of one rule keeps a superset; without -1, at most sum(N)."""
    if policy.count(rule) == -1 or policy.empty:  # the empty policy keeps everything
        return
    more = KeepPolicy(**{**_fields(policy), rule: policy.count(rule) + 1})
    before = {d.backup_id for d in apply_policy(cands, policy).keep}
    after = {d.backup_id for d in apply_policy(cands, more).keep}
    assert before <= after
    if not policy.empty and all(policy.count(r) >= 0 for r in RULES):
        per_group = sum(policy.count(r) for r in RULES)
        for _group, ds in apply_policy(cands, policy).groups().items():
            assert sum(d.keep for d in ds) <= per_group


@given(candidates())
def test_empty_policy_keeps_everything(cands: list[Candidate]) -> None:
    plan = apply_policy(cands, KeepPolicy())
    assert not plan.remove and len(plan.keep) == len(cands)


def _fields(p: KeepPolicy) -> dict[str, int]:
    return {rule: p.count(rule) for rule in RULES}


def _ids(plan_keep: object) -> list[str]:
    return [d.backup_id for d in plan_keep]  # type: ignore[attr-defined]


def test_keep_daily_keeps_the_newest_of_each_day_and_the_oldest_while_count_is_left() -> None:
    """Two backups a day for three days, keep-daily 5: the day's newest, plus the oldest."""
    cands = [
        Candidate(f"d{day}-{h}", T0 + day * DAY + h * 3600, "v") for day in range(3) for h in (1, 9)
    ]
    plan = apply_policy(cands, KeepPolicy(daily=5))
    assert _ids(plan.keep) == ["d2-9", "d1-9", "d0-9", "d0-1"]
    assert plan.keep[-1].reasons == ("daily",)
    tight = apply_policy(cands, KeepPolicy(daily=2))
    assert _ids(tight.keep) == ["d2-9", "d1-9"]


def test_weekly_uses_iso_weeks_and_monthly_calendar_months() -> None:
    """Sunday 2026-01-04 and Monday 2026-01-05 are different ISO weeks, same month."""
    sunday = datetime(2026, 1, 4, 12, tzinfo=UTC).timestamp()
    cands = [
        Candidate("mon", sunday + DAY, "v"),
        Candidate("sun", sunday, "v"),
        Candidate("sat", sunday - DAY, "v"),
    ]
    weekly = apply_policy(cands, KeepPolicy(weekly=2))
    assert _ids(weekly.keep) == ["mon", "sun"]
    monthly = apply_policy(cands, KeepPolicy(monthly=1))
    assert _ids(monthly.keep) == ["mon"]


def test_groups_are_decided_separately() -> None:
    """keep-last 1 keeps the newest backup of every volume."""
    cands = [Candidate("a1", T0, "a"), Candidate("a2", T0 + 1, "a"), Candidate("b1", T0, "b")]
    plan = apply_policy(cands, KeepPolicy(last=1))
    assert _ids(plan.keep) == ["a2", "b1"] and _ids(plan.remove) == ["a1"]


def test_calendar_buckets_follow_the_given_time_zone() -> None:
    """23:30 and 00:30 UTC are one day in UTC+2 (01:30, 02:30) but two in UTC."""
    late = datetime(2026, 3, 1, 23, 30, tzinfo=UTC).timestamp()
    cands = [Candidate("early", late + 3600, "v"), Candidate("late", late, "v")]
    assert len(apply_policy(cands, KeepPolicy(daily=3)).keep) == 2
    plus2 = timezone(timedelta(hours=2))
    tz_plan = apply_policy(cands, KeepPolicy(daily=1), tz=plus2)
    assert _ids(tz_plan.keep) == ["early"]


@pytest.mark.parametrize("bad", [-2, 1.5, True, "3"])
def test_invalid_counts_are_refused_naming_the_rule(bad: object) -> None:
    with pytest.raises(ValueError, match="keep-daily"):
        KeepPolicy(daily=bad)  # type: ignore[arg-type]


def test_a_backup_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        apply_policy([Candidate("x", T0, "a"), Candidate("x", T0, "b")], KeepPolicy(last=1))


def test_describe_and_to_dict() -> None:
    policy = KeepPolicy(last=3, monthly=-1)
    assert policy.describe() == "keep 3 latest, all monthly backups"
    assert policy.to_dict()["keep_last"] == 3 and policy.to_dict()["keep_daily"] == 0
    assert KeepPolicy().describe() == "keep everything (empty policy)"
