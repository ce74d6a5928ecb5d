"""One entry of the registry: a task, flow, factory or driver and its attributes.

`Registration.build` returns fresh atoms on every call, whatever was
registered: a factory or Task subclass is called; a registered task or flow
instance is copied (its atoms and flows are new objects, what they hold,
such as a backend, is shared). Arguments are checked against the piece's
parameters first, so a wrong one is named with the accepted list.
`Registration.describe` says how to build it and what the built piece
requires and provides (see `pieceworks.registry.description`).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from taskflow.flow import Flow
from taskflow.task import Task

from pieceworks.registry.attributes import Attribute, attribute_text
from pieceworks.registry.description import (
    Description,
    Parameter,
    atoms_of,
    docstring_summary,
    parameters_of,
    symbols_of,
)
from pieceworks.registry.errors import BuildArgumentError, NotBuildable

__all__ = ["Buildable", "Factory", "Feasibility", "Kind", "Registrable", "Registration"]

#: What a registration builds and a manager adds to its flow.
Buildable = Task | Flow
#: A callable returning a fresh task or flow (given the keyword arguments
#: the manager passes to `Registration.build`).
Factory = Callable[..., Buildable]
#: What can be registered: an atom or flow instance, a Task subclass, a
#: factory, or (with `Registry.register_driver`) a driver.
Registrable = Task | Flow | type[Task] | Factory | object
#: Given the build arguments a manager would pass, why the piece cannot be
#: built for them (a sentence), or None when it can.
Feasibility = Callable[[Mapping[str, object]], str | None]


class Kind(StrEnum):
    """What a registration holds."""

    TASK = "task"
    FLOW = "flow"
    TASK_CLASS = "task-class"
    FACTORY = "factory"
    DRIVER = "driver"

    @property
    def buildable(self) -> bool:
        """Whether `Registration.build` returns a task or flow for this kind."""
        return self is not Kind.DRIVER


def _fresh(piece: Buildable) -> Buildable:
    """A copy of `piece` with new atoms and flows; what the atoms hold is shared.

    Everything an atom was given beyond TaskFlow's own bookkeeping (a
    backend, a store, a request) is kept by reference: copying a live
    backend would be wrong. Notification listeners are not carried over.
    """
    memo: dict[int, object] = {}
    for atom in atoms_of(piece):
        for key, value in vars(atom).items():
            if key not in _ATOM_STATE:
                memo[id(value)] = value
    fresh = copy.deepcopy(piece, memo)
    for atom in atoms_of(fresh):
        if isinstance(atom, Task):
            atom.notifier.reset()
    return fresh


def _atom_state_names() -> frozenset[str]:
    class _Probe(Task):
        def execute(self) -> None:
            """Nothing: only its attributes are read."""

    return frozenset(vars(_Probe(name="probe")))


#: Attributes TaskFlow keeps on every task (copied per build, not shared).
_ATOM_STATE = _atom_state_names()


@dataclass(frozen=True, eq=False)
class Registration:
    """A registered item, what it provides, and where it ranks.

    Results of a search are ordered by `preference` (higher first), then by
    `order` (earlier registrations first). `summary` is one line saying
    what the piece does (the item's docstring's first line unless given);
    `feasible`, when set, tells whether the piece can be built for given
    build arguments (`Registry.find(..., request=...)` uses it).
    """

    name: str
    item: object
    kind: Kind
    provides: frozenset[Attribute]
    preference: int
    order: int
    backend: str | None = None
    keys: frozenset[Attribute] = field(default=frozenset(), repr=False)
    summary: str = ""
    feasible: Feasibility | None = field(default=None, repr=False)
    owner: object = field(default=None, repr=False)

    # -- parameters ----------------------------------------------------------

    def parameters(self) -> tuple[tuple[Parameter, ...], bool]:
        """The build parameters, and whether any keyword is accepted (``**kwargs``)."""
        if self.kind in (Kind.FACTORY, Kind.TASK_CLASS):
            assert callable(self.item)
            return parameters_of(self.item)
        return (), False

    def check_arguments(self, kwargs: Mapping[str, object]) -> None:
        """Raise `BuildArgumentError` unless `kwargs` fit the build parameters."""
        if self.kind is Kind.DRIVER:
            raise NotBuildable(
                f"registration {self.name!r} is a driver: it builds no task or flow"
                " (find with buildable=True to leave drivers out)"
            )
        params, _ = self.parameters()
        names = tuple(p.name for p in params)
        accepted = ", ".join(p.format() for p in params) or "none"
        if self.kind in (Kind.TASK, Kind.FLOW):
            if kwargs:
                raise BuildArgumentError(
                    f"registration {self.name!r} is a registered {self.kind.value} instance:"
                    f" it takes no build arguments (got {', '.join(sorted(kwargs))})",
                    self.name,
                    (),
                )
            return
        assert callable(self.item)
        try:
            inspect.signature(self.item).bind(**kwargs)
        except TypeError as exc:
            raise BuildArgumentError(
                f"registration {self.name!r}: {exc}; accepted parameters: {accepted}",
                self.name,
                names,
            ) from None

    # -- building ----------------------------------------------------------

    def build(self, **kwargs: object) -> Buildable:
        """Return a fresh task or flow to add to a larger flow.

        Factories and Task subclasses are called with `kwargs`; registered
        instances are copied (and take no arguments). Raise
        `BuildArgumentError` naming this registration and its accepted
        parameters when `kwargs` do not fit, `NotBuildable` for a driver.
        """
        self.check_arguments(kwargs)
        item = self.item
        if self.kind in (Kind.TASK, Kind.FLOW):
            assert isinstance(item, (Task, Flow))
            return _fresh(item)
        assert callable(item)
        built = item(**kwargs)
        if not isinstance(built, (Task, Flow)):
            raise NotBuildable(
                f"factory of registration {self.name!r} returned {type(built).__name__},"
                " not a TaskFlow task or flow"
            )
        return built

    # -- describing ----------------------------------------------------------

    def describe(self, **build_args: object) -> Description:
        """How to build this piece and what the built piece requires and provides.

        The symbols are read from a piece built with `build_args`; when it
        cannot be built with them (a required parameter missing, or the
        factory refuses them), `requires`, `optional` and `provides` are
        None and `unbuilt` says why. A wrong argument still raises
        `BuildArgumentError`.
        """
        params, accepts_any = self.parameters()
        base = Description(
            name=self.name,
            kind=self.kind.value,
            backend=self.backend,
            summary=self.summary,
            attributes=tuple(sorted(attribute_text(a) for a in self.provides)),
            buildable=self.kind.buildable,
            parameters=params,
            accepts_any=accepts_any,
        )
        if not self.kind.buildable:
            return replace(base, unbuilt="a driver builds no task or flow")
        missing = [p.name for p in params if p.required and p.name not in build_args]
        if missing:
            return replace(base, unbuilt=f"needs build arguments: {', '.join(missing)}")
        self.check_arguments(build_args)
        try:
            built = self.build(**build_args)
        except Exception as exc:  # the factory refused these arguments
            return replace(base, unbuilt=f"{type(exc).__name__}: {exc}")
        requires, optional, provides = symbols_of(built)
        return replace(base, requires=requires, optional=optional, provides=provides)


def default_summary(item: object) -> str:
    """The summary of `item`: its (or its class's) docstring's first line."""
    return docstring_summary(item)
