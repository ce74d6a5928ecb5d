"""Composing a manager's flow from registry pieces: collisions refused at once, naming
both pieces; a JSON recipe that rebuilds the same flow from another registry."""

from __future__ import annotations

import json

import pytest
from taskflow import engines, task

from pieceworks.protocols import ConfigError, NotFound
from pieceworks.registry import Composition, CompositionConflict, Registry, rebuild
from pieceworks.registry.description import atoms_of


class Emit(task.Task):
    """Provide `value` under `symbol` (a manager task, importable by path)."""

    def __init__(self, symbol: str = "out", value: str = "x", step: str = "emit") -> None:
        super().__init__(name=step, provides=symbol)
        self.value = value

    def execute(self) -> str:
        return self.value


class Shout(task.Task):
    """Upper-case what it reads."""

    default_provides = "shouted"

    def execute(self, out: str) -> str:
        return out.upper()


def make_emit(symbol: str = "out", value: str = "x", namespace: str = "emit") -> Emit:
    """An `Emit` named by `namespace`."""
    return Emit(symbol, value, step=f"{namespace}.emit")


def _registry() -> Registry:
    reg = Registry()
    reg.register(make_emit, provides=["emit"], name="east.emit", backend="east")
    reg.register(make_emit, provides=["emit"], name="west.emit", backend="west")
    return reg


def test_the_same_atom_name_twice_is_refused_naming_both_pieces() -> None:
    """TaskFlow would fail late with Duplicate; the composition refuses at add time."""
    reg = _registry()
    comp = Composition("twice")
    comp.add_piece(reg.find_one(["emit"], backend="east"), namespace="a", symbol="a.out")
    with pytest.raises(CompositionConflict) as clash:
        comp.add_piece(reg.find_one(["emit"], backend="west"), namespace="a", symbol="b.out")
    assert clash.value.pieces == ("registration 'west.emit'", "registration 'east.emit'")
    assert clash.value.names == ("a.emit",)
    assert "both use the atom name 'a.emit'" in str(clash.value)
    assert len(comp.flow) == 1  # nothing half-added


def test_the_same_provided_symbol_twice_is_refused_naming_both_pieces() -> None:
    """TaskFlow would silently hand the later consumer the second value."""
    reg = _registry()
    comp = Composition("shared-symbol")
    comp.add_piece(reg.find_one(["emit"], backend="east"), namespace="e", value="east")
    with pytest.raises(CompositionConflict, match="both use the provided symbol 'out'") as clash:
        comp.add_piece(reg.find_one(["emit"], backend="west"), namespace="w", value="west")
    assert clash.value.names == ("out",)
    with pytest.raises(CompositionConflict, match=r"task 'e\.emit' \(Emit\)"):
        comp.add_task(Emit, symbol="other", step="e.emit")


def test_a_recipe_rebuilds_the_same_flow_from_another_registry() -> None:
    """The recipe names registrations by backend, name and attributes, and manager tasks by
    import path; rebuilt from a fresh registry it has the same atoms and gives the same result."""
    comp = Composition("manager")
    comp.add_piece(_registry().find_one(["emit"], backend="east"), value="hi", namespace="e")
    comp.add_task(Shout)
    recipe = json.loads(json.dumps(comp.recipe()))
    assert recipe["steps"] == [
        {
            "piece": {"backend": "east", "name": "east.emit", "attributes": ["emit"]},
            "args": {"value": "hi", "namespace": "e"},
        },
        {"task": "tests.registry.test_composition:Shout", "args": {}},
    ]
    assert comp.backends() == ["east"]
    again = rebuild(recipe, _registry())
    assert [a.name for a in atoms_of(again)] == [a.name for a in atoms_of(comp.flow)]
    assert engines.run(again)["shouted"] == "HI"


def test_what_cannot_be_rebuilt_elsewhere_is_refused_when_recorded() -> None:
    """A task instance, a class defined in a function or non-JSON arguments run locally
    but make `recipe()` fail with what to change."""

    class Local(task.Task):
        def execute(self) -> None:
            pass

    comp = Composition("local")
    comp.add(Emit())
    comp.add_task(Local)
    with pytest.raises(
        ConfigError, match=r"task 'emit', task '\S+\.Local' \(\S+<locals>\.Local\)"
    ) as err:
        comp.recipe()
    assert "add_task(Class, ...)" in str(err.value)
    engines.run(comp.flow)


def test_rebuilding_with_a_registry_that_lacks_a_piece_is_not_found() -> None:
    """A conductor whose registry lacks the recorded registration says which one."""
    comp = Composition("m")
    comp.add_piece(_registry().find_one(["emit"], backend="west"), namespace="w")
    recipe = comp.recipe()
    only_east = Registry()
    only_east.register(make_emit, provides=["emit"], name="east.emit", backend="east")
    with pytest.raises(NotFound, match=r"no registration 'west\.emit' of backend 'west'"):
        rebuild(recipe, only_east)
    with pytest.raises(ConfigError, match="cannot be imported"):
        rebuild({**recipe, "steps": [{"task": "nowhere.module:Task"}]}, only_east)
    with pytest.raises(ConfigError, match="recipe version"):
        rebuild({**recipe, "version": 99}, only_east)
