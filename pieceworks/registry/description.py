"""What a registered piece needs and gives: `Parameter`, `Description`.

A manager that found a piece by its attributes still has to know how to
build it and how to wire it into its own flow. `Registration.describe()`
answers both without reading source:

- the build parameters (name, type, default, one line of doc), read from the
  factory's (or Task subclass's) signature and its docstring's
  ``:param name: text`` lines;
- the symbols the built piece requires from the engine's store (and those it
  takes when present: TaskFlow's *optional* arguments), and the symbols it
  provides: TaskFlow's own ``requires``/``optional``/``provides``, read from
  the atoms of a piece actually built (``describe(**build_args)`` builds it
  with those arguments; a piece with required build parameters not given is
  described without them);
- a one-line summary (the first line of the docstring).

Written here rather than taken from a library: `inspect.signature` and
TaskFlow's atom attributes are the sources; no library joins the two.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from taskflow.atom import Atom
from taskflow.flow import Flow
from taskflow.task import Task

__all__ = [
    "Description",
    "Parameter",
    "atoms_of",
    "docstring_summary",
    "parameters_of",
    "symbols_of",
]

#: TaskFlow's own Atom constructor options: not build parameters of a piece
#: (the registry names atoms and symbols itself).
_ATOM_OPTIONS = frozenset(inspect.signature(Task.__init__).parameters) - {"self"}
_QUALIFIERS = re.compile(r"\b(?:collections\.abc|typing)\.")
_PARAM_LINE = re.compile(r"^\s*:param\s+(?:[\w\[\], |.]+\s+)?(\w+):\s*(.*)$")


@dataclass(frozen=True)
class Parameter:
    """One build parameter: ``name: type = default`` and what it means.

    `required` is True when it has no default; `default` is then None.
    `type` is the annotation as written in source (``"str | None"``), or
    ``""`` when unannotated.
    """

    name: str
    type: str
    required: bool
    default: object = None
    doc: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON form; a default that is not a JSON scalar is given by its repr."""
        default = self.default
        if isinstance(default, tuple):
            default = list(default)
        elif not isinstance(default, (str, int, float, bool, type(None), list, dict)):
            default = repr(default)
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": default,
            "doc": self.doc,
        }

    def format(self) -> str:
        """``name: type = default`` as in a signature."""
        text = self.name + (f": {self.type}" if self.type else "")
        return text if self.required else f"{text} = {self.default!r}"


@dataclass(frozen=True)
class Description:
    """How to build a registered piece and what the built piece exchanges.

    `attributes` are what the registry finds it by; `parameters` what
    `Registration.build` accepts (`accepts_any` when the factory also takes
    ``**kwargs``); `requires` the symbols the built piece needs in the
    engine's store, `optional` those it uses when present, `provides` those
    it stores. `requires`, `optional` and `provides` are None when the piece
    could not be built without arguments (see `unbuilt`, which says why).
    """

    name: str
    kind: str
    backend: str | None
    summary: str
    attributes: tuple[str, ...]
    buildable: bool
    parameters: tuple[Parameter, ...] = ()
    accepts_any: bool = False
    requires: tuple[str, ...] | None = None
    optional: tuple[str, ...] | None = None
    provides: tuple[str, ...] | None = None
    unbuilt: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON form printed by ``pieceworks find --json``, one per match."""
        return {
            "name": self.name,
            "kind": self.kind,
            "backend": self.backend,
            "summary": self.summary,
            "attributes": list(self.attributes),
            "buildable": self.buildable,
            "parameters": [p.to_dict() for p in self.parameters],
            "accepts_any": self.accepts_any,
            "requires": None if self.requires is None else list(self.requires),
            "optional": None if self.optional is None else list(self.optional),
            "provides": None if self.provides is None else list(self.provides),
            "unbuilt": self.unbuilt,
        }

    def format_text(self) -> str:
        """A readable block: summary, parameters, requires, provides."""
        lines = [f"{self.name} ({self.kind}): {self.summary}".rstrip(": ")]
        lines.append(f"  attributes: {', '.join(self.attributes)}")
        for p in self.parameters:
            lines.append(f"  param {p.format()}" + (f"  # {p.doc}" if p.doc else ""))
        if self.requires is not None:
            lines.append(f"  requires: {', '.join(self.requires) or '-'}")
            lines.append(f"  optional: {', '.join(self.optional or ()) or '-'}")
            lines.append(f"  provides: {', '.join(self.provides or ()) or '-'}")
        elif self.unbuilt:
            lines.append(f"  symbols: unknown until built ({self.unbuilt})")
        return "\n".join(lines)


def docstring_summary(obj: object) -> str:
    """The first line of `obj`'s docstring (its class's for an instance), or ``""``."""
    doc = inspect.getdoc(obj)
    if not doc and not isinstance(obj, type) and not callable(obj):
        doc = inspect.getdoc(type(obj))
    return doc.strip().splitlines()[0].strip() if doc else ""


def _param_docs(obj: Callable[..., Any]) -> dict[str, str]:
    docs: dict[str, str] = {}
    sources: list[object] = [obj]
    if isinstance(obj, type):
        sources.append(getattr(obj, "__init__", None))
    for source in sources:
        for line in (inspect.getdoc(source) or "").splitlines():
            m = _PARAM_LINE.match(line)
            if m:
                docs.setdefault(m.group(1), m.group(2).strip())
    return docs


def _annotation(annotation: object) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return _QUALIFIERS.sub("", text)


def parameters_of(item: Callable[..., Any]) -> tuple[tuple[Parameter, ...], bool]:
    """The build parameters of a factory or Task subclass, and whether it takes ``**kwargs``.

    For a Task subclass, TaskFlow's own constructor options (``name``,
    ``provides``, ``rebind``...) are not build parameters and are left out.
    Raise `TypeError` if `item` has no inspectable signature.
    """
    try:
        signature = inspect.signature(item, eval_str=True)
    except (NameError, TypeError):
        signature = inspect.signature(item)
    docs = _param_docs(item)
    is_task_class = isinstance(item, type) and issubclass(item, Task)
    params: list[Parameter] = []
    accepts_any = False
    for p in signature.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_any = not is_task_class
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if is_task_class and p.name in _ATOM_OPTIONS:
            continue
        required = p.default is inspect.Parameter.empty
        params.append(
            Parameter(
                name=p.name,
                type=_annotation(p.annotation),
                required=required,
                default=None if required else p.default,
                doc=docs.get(p.name, ""),
            )
        )
    return tuple(params), accepts_any


def atoms_of(piece: Atom | Flow) -> Iterator[Atom]:
    """Every atom of `piece` (a task, a retry, or a flow, recursively), in order."""
    if isinstance(piece, Flow):
        if piece.retry is not None:
            yield piece.retry
        for node, _meta in piece.iter_nodes():
            yield from atoms_of(node)
    else:
        yield piece


def symbols_of(piece: Atom | Flow) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(requires, optional, provides)``: the symbols `piece` exchanges with the store.

    Computed from TaskFlow's own per-atom ``requires``, ``optional`` and
    ``provides``; a symbol provided inside the piece is not required from
    outside. Each tuple is sorted.
    """
    atoms = list(atoms_of(piece))
    provided = {s for a in atoms for s in a.provides}
    requires = {s for a in atoms for s in a.requires} - provided
    optional = {s for a in atoms for s in a.optional} - provided - requires
    return tuple(sorted(requires)), tuple(sorted(optional)), tuple(sorted(provided))
