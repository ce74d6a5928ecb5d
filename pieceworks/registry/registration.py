"""One entry of the registry: a task, flow, factory or driver and its attributes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from taskflow.flow import Flow
from taskflow.task import Task

from pieceworks.registry.attributes import Attribute

__all__ = ["Buildable", "Factory", "Kind", "Registrable", "Registration"]

#: What a registration builds and a manager adds to its flow.
Buildable = Task | Flow
#: A callable returning a fresh task or flow (given the keyword arguments
#: the manager passes to `Registration.build`).
Factory = Callable[..., Buildable]
#: What can be registered: an atom or flow instance, a Task subclass, a
#: factory, or (with `Registry.register_driver`) a driver.
Registrable = Task | Flow | type[Task] | Factory | object


class Kind(StrEnum):
    """What a registration holds."""

    TASK = "task"
    FLOW = "flow"
    TASK_CLASS = "task-class"
    FACTORY = "factory"
    DRIVER = "driver"


@dataclass(frozen=True, eq=False)
class Registration:
    """A registered item, what it provides, and where it ranks.

    Results of a search are ordered by `preference` (higher first), then by
    `order` (earlier registrations first).
    """

    name: str
    item: object
    kind: Kind
    provides: frozenset[Attribute]
    preference: int
    order: int
    backend: str | None = None
    keys: frozenset[Attribute] = field(default=frozenset(), repr=False)

    def build(self, **kwargs: object) -> Buildable:
        """Return a task or flow to add to a larger flow.

        Factories and Task subclasses are called with `kwargs`, so each
        call returns a fresh object; registered instances are returned as
        they are (and take no arguments). A driver builds nothing.
        """
        item = self.item
        if self.kind in (Kind.TASK, Kind.FLOW):
            if kwargs:
                raise TypeError(f"registration {self.name!r} is an instance; it takes no arguments")
            assert isinstance(item, (Task, Flow))
            return item
        if self.kind is Kind.DRIVER:
            raise TypeError(f"registration {self.name!r} is a driver, not a task or flow")
        assert callable(item)
        built = item(**kwargs)
        if not isinstance(built, (Task, Flow)):
            raise TypeError(
                f"factory of registration {self.name!r} returned {type(built).__name__},"
                " not a TaskFlow task or flow"
            )
        return built
