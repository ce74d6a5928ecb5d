"""A manager's flow composed of registry pieces and its own tasks, checked and recordable.

    composition = Composition("create-backup")
    composition.add_task(ReserveQuota)
    composition.add_piece(registry.find_one(["live-backup"], backend="lab"), in_use=True)
    composition.add_task(UpdateRecord, rebind={"result": "lab.backup.result"})
    engines.run(composition.flow, store={"volume_id": "vol-1"})

Two guarantees a bare ``flow.add`` does not give:

- **No silent collision.** Every piece added is checked against those
  already there: two atoms with one name (TaskFlow would fail late with
  ``Duplicate``) or two pieces providing one symbol (TaskFlow would give
  the later consumer the second value without a word) are refused at once
  with `CompositionConflict`, naming both pieces and what they share.
- **A recipe.** `recipe()` is JSON: the flow's name and, in order, each
  step as the registration's stable names (``backend``, ``name`` and its
  ``attributes``) with its build arguments, or a manager task's import path
  (``module:Class``) with its constructor arguments. `rebuild(recipe,
  registry)` makes the same flow again from any process's own registry, so
  a composed flow can be posted as a job and resumed by any conductor
  (TaskFlow matches atoms by name, and the names are the same).

Manager tasks added as instances (`add`) make the composition run locally
only: `recipe()` refuses it, since a conductor could not rebuild them.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskflow.flow import Flow
from taskflow.patterns import graph_flow, linear_flow, unordered_flow
from taskflow.task import Task

from pieceworks.protocols import ConfigError, NotFound
from pieceworks.registry.attributes import attribute_text, normalise
from pieceworks.registry.description import atoms_of
from pieceworks.registry.errors import CompositionConflict
from pieceworks.registry.registration import Buildable, Registration
from pieceworks.registry.registry import Registry

__all__ = ["PATTERNS", "RECIPE_VERSION", "Composition", "rebuild"]

#: The flow patterns a composition can use, by the name its recipe records.
PATTERNS: Mapping[str, type[Flow]] = {
    "linear": linear_flow.Flow,
    "unordered": unordered_flow.Flow,
    "graph": graph_flow.Flow,
}
#: Version of the recipe's JSON form.
RECIPE_VERSION = 1


@dataclass
class _Owners:
    """Who in the composition owns each atom name and provided symbol."""

    atoms: dict[str, str] = field(default_factory=dict)
    symbols: dict[str, str] = field(default_factory=dict)


def _task_path(cls: type[Task]) -> str:
    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        raise ConfigError(
            f"task class {cls.__qualname__} cannot be found by import path"
            f" ({cls.__module__}:{cls.__qualname__}): define it at module level"
            " in an importable module"
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_task(path: str) -> type[Task]:
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"manager task {path!r} cannot be imported: {exc}") from None
    if not (isinstance(target, type) and issubclass(target, Task)):
        raise ConfigError(f"manager task {path!r} is not a TaskFlow Task subclass")
    return target


def _json_args(what: str, args: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(dict(args))))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{what}: build arguments must be JSON-able to be recorded: {exc}"
        ) from None


class Composition:
    """A flow being composed; see the module docstring.

    `pattern` is ``"linear"`` (default), ``"unordered"`` or ``"graph"``
    (TaskFlow's patterns). `flow` is the flow itself, ready to run.
    """

    def __init__(self, name: str, pattern: str = "linear") -> None:
        if pattern not in PATTERNS:
            raise ConfigError(f"unknown flow pattern {pattern!r}: use one of {', '.join(PATTERNS)}")
        self.flow: Flow = PATTERNS[pattern](name)
        self.pattern = pattern
        self._owners = _Owners()
        self._steps: list[dict[str, Any]] = []
        self._local: list[str] = []  # labels of steps no recipe can hold

    # -- adding --------------------------------------------------------------

    def add_piece(self, registration: Registration, **build_args: Any) -> Buildable:
        """Build `registration` with `build_args`, check it, add it; return the piece."""
        label = f"registration {registration.name!r}"
        piece = registration.build(**build_args)
        self._admit(piece, label)
        try:
            args = _json_args(label, build_args)
        except ConfigError:
            self._local.append(label)
            self._steps.append({"local": label})
            return piece
        names = {
            "backend": registration.backend,
            "name": registration.name,
            "attributes": sorted(attribute_text(a) for a in registration.provides),
        }
        self._steps.append({"piece": names, "args": args})
        return piece

    def add_task(self, cls: type[Task], **kwargs: Any) -> Task:
        """Add a manager task built as ``cls(**kwargs)``; recorded by import path."""
        atom = cls(**kwargs)
        label = f"task {atom.name!r} ({cls.__qualname__})"
        try:
            path = _task_path(cls)
            args = _json_args(label, kwargs)
        except ConfigError:
            self._admit(atom, label)
            self._local.append(label)
            self._steps.append({"local": label})
            return atom
        self._admit(atom, label)
        self._steps.append({"task": path, "args": args})
        return atom

    def add(self, *items: Buildable) -> None:
        """Add tasks or flows built elsewhere (checked; but no recipe can hold them)."""
        for item in items:
            label = f"{'flow' if isinstance(item, Flow) else 'task'} {item.name!r}"
            self._admit(item, label)
            self._local.append(label)
            self._steps.append({"local": label})

    def _admit(self, piece: Buildable, label: str) -> None:
        """Refuse `piece` if it shares an atom name or provided symbol with another piece."""
        atoms = list(atoms_of(piece))
        names = [a.name or "" for a in atoms]
        symbols = {s for a in atoms for s in a.provides}
        for kind, mine, owners in (
            ("atom name", names, self._owners.atoms),
            ("provided symbol", sorted(symbols), self._owners.symbols),
        ):
            clash = [n for n in mine if n in owners]
            if clash:
                other = owners[clash[0]]
                shared = ", ".join(repr(n) for n in clash)
                raise CompositionConflict(
                    f"{label} and {other} both use the {kind}{'s' if len(clash) > 1 else ''}"
                    f" {shared} in flow {self.flow.name!r}; build one of them with another"
                    " namespace (build argument namespace=...) or rename it",
                    (label, other),
                    tuple(clash),
                )
        self._owners.atoms.update((n, label) for n in names)
        self._owners.symbols.update((s, label) for s in symbols)
        self.flow.add(piece)

    # -- recording -----------------------------------------------------------

    def recipe(self) -> dict[str, Any]:
        """The JSON-able recipe `rebuild` makes this flow again from.

        Raise `ConfigError` if a step cannot be recorded (a manager task
        added as an instance or defined where no import path finds it, or
        build arguments that are not JSON).
        """
        if self._local:
            raise ConfigError(
                f"flow {self.flow.name!r} cannot be recorded: {', '.join(self._local)}"
                " cannot be rebuilt elsewhere; add manager tasks with add_task(Class, ...)"
                " from an importable module, and JSON-able build arguments"
            )
        return {
            "version": RECIPE_VERSION,
            "name": self.flow.name,
            "pattern": self.pattern,
            "steps": [dict(s) for s in self._steps],
        }

    def backends(self) -> list[str]:
        """The names of the backends whose pieces this composition holds, in order."""
        out: list[str] = []
        for step in self._steps:
            backend = step.get("piece", {}).get("backend")
            if backend and backend not in out:
                out.append(backend)
        return out


def _find(registry: Registry, piece: Mapping[str, Any]) -> Registration:
    name, backend = str(piece["name"]), piece.get("backend")
    attributes: Iterable[str] = piece.get("attributes") or ()
    wanted = [normalise(a) for a in attributes]
    try:
        found = registry.find(wanted, backend=backend, buildable=True) if wanted else []
    except NotFound as exc:
        found, why = [], f" ({exc})"
    else:
        why = f" (found: {', '.join(r.name for r in found) or 'none'})"
    for reg in found:
        if reg.name == name:
            return reg
    raise NotFound(
        f"this registry has no registration {name!r} of backend {backend!r}"
        f" providing {', '.join(attributes) or 'nothing'}{why}"
    )


def rebuild(recipe: Mapping[str, Any], registry: Registry) -> Flow:
    """The flow `recipe` describes, built from `registry`'s own registrations.

    Each piece is found again by its stable names (backend, registration
    name, attributes) and built with the recorded arguments; each manager
    task is imported by path and built with its recorded arguments. Raise
    `NotFound` for a registration `registry` lacks, `ConfigError` for a
    malformed recipe or a task that cannot be imported.
    """
    if recipe.get("version") != RECIPE_VERSION:
        raise ConfigError(
            f"unknown composition recipe version {recipe.get('version')!r}"
            f" (this side reads {RECIPE_VERSION})"
        )
    composition = Composition(str(recipe["name"]), str(recipe.get("pattern", "linear")))
    for step in recipe.get("steps", ()):
        args = dict(step.get("args") or {})
        if "piece" in step:
            composition.add_piece(_find(registry, step["piece"]), **args)
        elif "task" in step:
            composition.add_task(_import_task(str(step["task"])), **args)
        else:
            raise ConfigError(f"composition step {step!r} names no piece and no task")
    return composition.flow
