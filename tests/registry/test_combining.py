"""Pieces combine without surprises: fresh atoms per build, drivers left out on
request, tags never mistaken for capabilities, misses explained with suggestions,
and a registration only unregistered from its own registry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from taskflow import engines, task
from taskflow.patterns import linear_flow, unordered_flow

from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import ISnapshot
from pieceworks.registry import (
    ForeignRegistration,
    Kind,
    NoMatch,
    Registry,
    UnknownAttribute,
)


class Counter(task.Task):
    """Count its runs in a list it shares with every copy of itself."""

    def __init__(self, runs: list[str], name: str = "count") -> None:
        super().__init__(name=name, provides=f"{name}.done")
        self.runs = runs

    def execute(self) -> str:
        self.runs.append(self.name)
        return self.name


def test_a_registered_task_instance_builds_a_fresh_task_each_time() -> None:
    """Two builds are two atoms: renamed apart they both run (the old registry handed back
    the same object, which added twice ran once without any error)."""
    runs: list[str] = []
    original = Counter(runs)
    reg = Registry().register(original, provides=["count"])
    one, two = reg.build(), reg.build()
    assert isinstance(one, Counter) and isinstance(two, Counter)
    assert one is not two and one is not original
    assert one.runs is runs  # what the task holds is shared
    one.name, two.name = "count-1", "count-2"
    engines.run(unordered_flow.Flow("both").add(one, two))
    assert sorted(runs) == ["count-1", "count-2"]
    assert original.name == "count"


def test_a_registered_flow_instance_builds_fresh_atoms_each_time() -> None:
    """A registered flow is copied with all its atoms; the flows and atoms differ per build."""
    runs: list[str] = []
    flow = linear_flow.Flow("pair").add(Counter(runs, "a"), Counter(runs, "b"))
    reg = Registry().register(flow, provides=["pair"])
    one, two = reg.build(), reg.build()
    assert isinstance(one, linear_flow.Flow) and isinstance(two, linear_flow.Flow)
    assert reg.kind is Kind.FLOW
    atoms_one, atoms_two = list(one), list(two)
    assert all(x is not y for x, y in zip(atoms_one, atoms_two, strict=True))
    assert all(x is not y for x, y in zip(atoms_one, list(flow), strict=True))
    engines.run(one)
    engines.run(two)
    assert runs == ["a", "b", "a", "b"]


def test_buildable_leaves_drivers_out(tmp_path: Path) -> None:
    """A backend's driver is registered under its capabilities too; buildable=True
    (or kind) returns only pieces that build a task or flow."""
    reg = Registry()
    driver = reg.register_driver(FileDriver(str(tmp_path)), name="lab", tags=["lab-things"])
    piece = reg.register(Counter([]), provides=["lab-things"], backend="lab")
    assert reg.find(["lab-things"]) == [driver, piece]
    assert reg.find(["lab-things"], buildable=True) == [piece]
    assert reg.find(backend="lab", buildable=True) == [piece]
    with pytest.raises(NoMatch, match=r"'lab' \(driver\) is a driver, which builds nothing"):
        reg.find(["capability:stream-out"], buildable=True)


def test_tags_and_capabilities_are_separate_namespaces(tmp_path: Path) -> None:
    """The tag 'snapshot' is not the capability: a piece tagged 'snapshot' is not found by
    capability:snapshot (nor ISnapshot), and a driver with snapshot is not found by the tag."""
    reg = Registry()
    driver = reg.register_driver(FileDriver(str(tmp_path)), name="lab")
    tagged = reg.register(Counter([]), provides=["snapshot"])
    assert reg.find(["snapshot"]) == [tagged]
    assert reg.find(["capability:snapshot"]) == [driver]
    assert reg.find([ISnapshot]) == [driver]
    with pytest.raises(UnknownAttribute, match="did you mean capability:snapshot"):
        reg.find(["capability:snapshots"])
    with pytest.raises(NoMatch, match=r"lacks \[capability:compress\]"):
        reg.find(["capability:compress"])


def test_a_misspelled_tag_gets_the_closest_known_names() -> None:
    """NoMatch suggests known tags close to an unknown one (difflib), in text and as data."""
    reg = Registry()
    reg.register(Counter([]), provides=["live-backup", "fast-backup"])
    with pytest.raises(NoMatch) as miss:
        reg.find(["live-bakup"])
    assert "'live-bakup' is registered nowhere: did you mean 'live-backup'?" in str(miss.value)
    assert miss.value.suggestions == {"live-bakup": ("live-backup",)}
    with pytest.raises(NoMatch) as far:
        reg.find(["zzzz"])
    assert far.value.suggestions == {}


def test_unregister_refuses_a_registration_of_another_registry() -> None:
    """The old registry removed whatever entry had the same internal number."""
    mine, theirs = Registry(), Registry()
    kept = mine.register(Counter([]), provides=["x"])
    foreign = theirs.register(Counter([]), provides=["y"])
    assert kept.order == foreign.order  # same internal number
    with pytest.raises(ForeignRegistration, match="belongs to another registry"):
        mine.unregister(foreign)
    assert mine.find(["x"]) == [kept]


def _only_even(request: Mapping[str, object]) -> str | None:
    n = request.get("n", 0)
    return None if isinstance(n, int) and n % 2 == 0 else f"n={n} is odd"


def make_counter(n: int = 0) -> Counter:
    """A counter named after `n`."""
    return Counter([], name=f"count-{n}")


def test_find_with_a_request_reports_what_cannot_be_built_for_it() -> None:
    """Given the build arguments, a match whose check refuses them or whose parameters do
    not take them is left out; when none is left, NoMatch (a NotFound) gives each reason."""
    reg = Registry()
    even = reg.register(make_counter, provides=["count"], name="even", feasible=_only_even)
    inst = reg.register(Counter([]), provides=["count"], name="inst")
    assert reg.find(["count"], request={"n": 2}) == [even]
    assert reg.find(["count"], request={}) == [even, inst]
    with pytest.raises(NoMatch) as miss:
        reg.find(["count"], request={"n": 3})
    assert miss.value.reasons["even"] == "n=3 is odd"
    assert "it takes no build arguments" in miss.value.reasons["inst"]
    assert str(miss.value).startswith("no registration matching all of ['count'] can be built")
