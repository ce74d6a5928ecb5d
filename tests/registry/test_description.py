"""`Registration.describe()`: what a found piece needs (build parameters, store
symbols) and gives (provided symbols), and a clear error for a wrong build argument."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskflow import task
from taskflow.patterns import linear_flow

from pieceworks.drivers.file import FileDriver
from pieceworks.registry import BuildArgumentError, Kind, NotBuildable, Registry


class Double(task.Task):
    """Double a number taken from the store."""

    def execute(self, number: int, factor: int = 2) -> int:
        return number * factor


class Greeter(task.Task):
    """Greet someone by name.

    :param greeting: the word to greet with
    """

    def __init__(self, greeting: str = "hello", **kwargs: object) -> None:
        super().__init__(name=f"greet-{greeting}", provides="greeting")
        self.greeting = greeting

    def execute(self, who: str) -> str:
        return f"{self.greeting} {who}"


def make_pipeline(source: str, times: int = 1, *, label: str | None = None) -> linear_flow.Flow:
    """Double `source` `times` times.

    :param source: the store symbol holding the number
    :param times: how many doublings
    :param label: a prefix for atom names (default: the source)
    """
    prefix = label or source
    flow = linear_flow.Flow(prefix)
    symbol = source
    for i in range(times):
        out = f"{prefix}.x{i}"
        flow.add(Double(name=f"{prefix}.double-{i}", rebind={"number": symbol}, provides=out))
        symbol = out
    return flow


def test_a_factory_is_described_from_its_signature_and_its_built_atoms() -> None:
    """Parameters come from the signature and ``:param`` docs; requires, optional and
    provides are TaskFlow's own, read from a piece built with the given arguments."""
    reg = Registry().register(make_pipeline, provides=["doubling"], name="pipe")
    d = reg.describe(source="n", times=2)
    assert d.summary == "Double `source` `times` times."
    assert [(p.name, p.type, p.required, p.default) for p in d.parameters] == [
        ("source", "str", True, None),
        ("times", "int", False, 1),
        ("label", "str | None", False, None),
    ]
    assert d.parameters[1].doc == "how many doublings"
    assert d.requires == ("n",)
    assert d.optional == ("factor",)
    assert d.provides == ("n.x0", "n.x1")
    assert d.attributes == ("doubling",) and d.kind == "factory" and d.buildable
    js = d.to_dict()
    assert js["parameters"][1] == {  # type: ignore[index]
        "name": "times",
        "type": "int",
        "required": False,
        "default": 1,
        "doc": "how many doublings",
    }
    assert js["requires"] == ["n"] and js["provides"] == ["n.x0", "n.x1"]


def test_a_factory_with_required_parameters_not_given_is_described_without_symbols() -> None:
    """Without its required build arguments nothing can be built: symbols are unknown,
    and `unbuilt` names what is missing."""
    d = Registry().register(make_pipeline, provides=["doubling"], name="pipe").describe()
    assert d.requires is None and d.provides is None
    assert d.unbuilt == "needs build arguments: source"
    assert "symbols: unknown until built" in d.format_text()


def test_task_classes_instances_and_drivers_are_described() -> None:
    """A Task subclass lists its own constructor parameters (not TaskFlow's options);
    an instance takes none; a driver is described as not buildable."""
    reg = Registry()
    cls = reg.register(Greeter, provides=["greet"]).describe()
    assert [p.name for p in cls.parameters] == ["greeting"]
    assert cls.parameters[0].doc == "the word to greet with"
    assert cls.requires == ("who",) and cls.provides == ("greeting",)
    assert cls.summary == "Greet someone by name."
    inst = reg.register(Double(provides="doubled"), provides=["double"]).describe()
    assert inst.parameters == () and inst.kind == Kind.TASK.value
    assert inst.requires == ("number",) and inst.optional == ("factor",)
    assert inst.provides == ("doubled",)
    assert inst.summary == "Double a number taken from the store."


def test_a_wrong_build_argument_names_the_registration_and_the_accepted_parameters() -> None:
    """Unknown, missing and superfluous arguments are one error kind with the list."""
    reg = Registry()
    pipe = reg.register(make_pipeline, provides=["doubling"], name="pipe")
    with pytest.raises(BuildArgumentError) as unknown:
        pipe.build(source="n", tims=2)
    assert str(unknown.value).startswith("registration 'pipe': got an unexpected keyword")
    assert "accepted parameters: source: str, times: int = 1, label: str | None = None" in str(
        unknown.value
    )
    assert unknown.value.registration == "pipe"
    assert unknown.value.accepted == ("source", "times", "label")
    with pytest.raises(BuildArgumentError, match="missing a required argument: 'source'"):
        pipe.build()
    with pytest.raises(BuildArgumentError, match="got an unexpected keyword"):
        pipe.describe(source="n", nope=1)
    inst = reg.register(Double(), provides=["double"], name="dbl")
    with pytest.raises(BuildArgumentError, match="'dbl' is a registered task instance"):
        inst.build(number=1)
    assert isinstance(BuildArgumentError("x", "r", ()), TypeError)


def test_a_driver_builds_nothing_with_a_clear_error(tmp_path: Path) -> None:
    """Building a driver registration is `NotBuildable`, not a bare TypeError from deep inside."""
    reg = Registry().register_driver(FileDriver(str(tmp_path)), name="lab")
    with pytest.raises(NotBuildable, match="'lab' is a driver: it builds no task or flow"):
        reg.build()
    assert reg.describe().buildable is False
