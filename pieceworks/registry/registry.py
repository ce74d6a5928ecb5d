"""The attribute registry: register pieces under attributes, find them again.

This is the founding discussion's idea: a manager asks for the tasks and
flows that provide some attributes (capabilities, or tags such as
``live-backup``) and gets them back, or `NoMatch` (a `NotFound`) that says
what was asked and what came closest, without knowing any driver.

    registry = Registry()
    registry.register(FastCopy, provides=["fast-backup"], backend="lab")
    for reg in registry.find(any_of=["fast-backup", "live-backup"]):
        flow.add(reg.build())
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Set

from taskflow.flow import Flow
from taskflow.task import Task

from pieceworks.protocols import NotFound, verify_driver
from pieceworks.registry.attributes import Attribute, attribute_label, expand, normalise
from pieceworks.registry.registration import Kind, Registrable, Registration

__all__ = ["NoMatch", "Registry"]

_EMPTY: frozenset[int] = frozenset()


class NoMatch(NotFound):
    """A search matched no registration.

    The message names the query and the closest registrations with what
    each lacks; `closest` holds those registrations.
    """

    def __init__(self, message: str, closest: tuple[Registration, ...]) -> None:
        super().__init__(message)
        self.closest = closest


def _kind_of(item: Registrable) -> Kind:
    if isinstance(item, Flow):
        return Kind.FLOW
    if isinstance(item, Task):
        return Kind.TASK
    if isinstance(item, type) and issubclass(item, Task):
        return Kind.TASK_CLASS
    if callable(item):
        return Kind.FACTORY
    raise TypeError(
        f"cannot register {item!r}: expected a TaskFlow task or flow, a Task subclass,"
        " or a factory returning one (use register_driver for drivers)"
    )


def _default_name(item: object) -> str:
    name = getattr(item, "name", None)
    if isinstance(name, str):
        return name
    return getattr(item, "__qualname__", type(item).__qualname__)


class Registry:
    """A thread-safe index from attributes to registrations.

    Registration and search may run concurrently from any number of threads.
    A search costs a few set intersections over the attributes asked for,
    independent of the number of registrations that do not match; the last
    `cache_size` distinct queries are remembered until the next change
    (``cache_size=0`` turns that off). A miss is not cached.
    """

    def __init__(self, *, cache_size: int = 1024) -> None:
        self._lock = threading.RLock()
        self._registrations: dict[int, Registration] = {}
        self._index: dict[Attribute, set[int]] = {}
        self._next = 0
        self._ranked = False  # True once any registration has a non-zero preference
        self._cache: dict[tuple[object, ...], tuple[Registration, ...]] = {}
        self._cache_size = cache_size

    # -- registering -------------------------------------------------------

    def register(
        self,
        item: Registrable,
        *,
        provides: Iterable[Attribute],
        name: str | None = None,
        preference: int = 0,
        backend: str | None = None,
    ) -> Registration:
        """Register a task, flow, Task subclass or factory under `provides`.

        `preference` ranks it above (higher) or below (lower) other matches;
        equal preferences keep registration order. `backend` records which
        configured backend the item belongs to, so a manager can ask for one
        backend's pieces.
        """
        return self._add(item, _kind_of(item), provides, name, preference, backend)

    def register_driver(
        self,
        driver: object,
        *,
        name: str,
        tags: Iterable[str] = (),
        preference: int = 0,
    ) -> Registration:
        """Verify `driver` and register it under its capabilities and `tags`.

        Every capability the driver claims (by subclassing a base class or
        by `@implementer`) is checked with zope.interface; a driver that
        falls short is refused with `InvalidDriver` naming the driver, the
        capability and each missing or mismatched member.
        """
        capabilities = verify_driver(driver, name)
        return self._add(driver, Kind.DRIVER, (*capabilities, *tags), name, preference, name)

    def _add(
        self,
        item: object,
        kind: Kind,
        provides: Iterable[Attribute],
        name: str | None,
        preference: int,
        backend: str | None,
    ) -> Registration:
        given = frozenset(normalise(a) for a in provides)
        if not given:
            raise ValueError(f"registration of {item!r} provides no attribute")
        keys = expand(given)
        with self._lock:
            order = self._next
            self._next += 1
            reg = Registration(
                name=name or _default_name(item),
                item=item,
                kind=kind,
                provides=given,
                preference=preference,
                order=order,
                backend=backend,
                keys=keys,
            )
            self._registrations[order] = reg
            for key in keys:
                self._index.setdefault(key, set()).add(order)
            self._ranked = self._ranked or preference != 0
            self._cache.clear()
        return reg

    def unregister(self, registration: Registration) -> None:
        """Remove `registration`; removing it twice is not an error."""
        with self._lock:
            if self._registrations.pop(registration.order, None) is None:
                return
            self._cache.clear()
            for key in registration.keys:
                ids = self._index.get(key)
                if ids is not None:
                    ids.discard(registration.order)
                    if not ids:
                        del self._index[key]

    # -- searching ---------------------------------------------------------

    def find(
        self,
        all_of: Iterable[Attribute] = (),
        *,
        any_of: Iterable[Attribute] = (),
        none_of: Iterable[Attribute] = (),
        kind: Kind | None = None,
        backend: str | None = None,
    ) -> list[Registration]:
        """Return the registrations matching the query, best first.

        A match provides every attribute of `all_of`, at least one of
        `any_of` (when given) and none of `none_of`; `kind` and `backend`
        narrow further. Results are ranked by preference, then registration
        order. Raise `NoMatch` (a `NotFound`) when nothing matches.
        """
        want_all = tuple(normalise(a) for a in all_of)
        want_any = tuple(normalise(a) for a in any_of)
        want_none = tuple(normalise(a) for a in none_of)
        if not want_all and not want_any and kind is None and backend is None:
            raise ValueError("find() needs at least one attribute, a kind or a backend")
        query = (want_all, want_any, want_none, kind, backend)
        with self._lock:
            cached = self._cache.get(query)
            if cached is None:
                cached = self._search(want_all, want_any, want_none, kind, backend)
                if self._cache_size > 0:
                    if len(self._cache) >= self._cache_size:
                        self._cache.pop(next(iter(self._cache)))
                    self._cache[query] = cached
        return list(cached)

    def _search(
        self,
        want_all: tuple[Attribute, ...],
        want_any: tuple[Attribute, ...],
        want_none: tuple[Attribute, ...],
        kind: Kind | None,
        backend: str | None,
    ) -> tuple[Registration, ...]:
        index, regs = self._index, self._registrations
        any_sets = [index.get(a, _EMPTY) for a in want_any]
        ids: Set[int]
        if want_all:
            sets = sorted((index.get(a, _EMPTY) for a in want_all), key=len)
            ids = sets[0].intersection(*sets[1:])
            if any_sets:
                ids = {i for i in ids if any(i in s for s in any_sets)}
        elif any_sets:
            ids = set().union(*any_sets)
        else:
            ids = regs.keys()
        if want_none and ids:
            ids = set(ids).difference(*(index.get(a, _EMPTY) for a in want_none))
        found = [regs[i] for i in sorted(ids)]
        if kind is not None or backend is not None:
            found = [
                r
                for r in found
                if (kind is None or r.kind is kind) and (backend is None or r.backend == backend)
            ]
        if not found:
            raise self._no_match(want_all, want_any, want_none, kind, backend)
        if self._ranked:
            found.sort(key=_rank)
        return tuple(found)

    def find_one(
        self,
        all_of: Iterable[Attribute] = (),
        *,
        any_of: Iterable[Attribute] = (),
        none_of: Iterable[Attribute] = (),
        kind: Kind | None = None,
        backend: str | None = None,
    ) -> Registration:
        """The best match of `find`; `NoMatch` if there is none."""
        return self.find(all_of, any_of=any_of, none_of=none_of, kind=kind, backend=backend)[0]

    def __len__(self) -> int:
        return len(self._registrations)

    def __iter__(self) -> Iterator[Registration]:
        with self._lock:
            regs = list(self._registrations.values())
        regs.sort(key=_rank)
        return iter(regs)

    # -- explaining a miss -------------------------------------------------

    def _no_match(
        self,
        want_all: tuple[Attribute, ...],
        want_any: tuple[Attribute, ...],
        want_none: tuple[Attribute, ...],
        kind: Kind | None,
        backend: str | None,
    ) -> NoMatch:
        query = _describe_query(want_all, want_any, want_none, kind, backend)
        scores: Counter[int] = Counter()
        for a in (*want_all, *want_any):
            for i in self._index.get(a, _EMPTY):
                scores[i] += 1
        candidates = [self._registrations[i] for i in scores] or list(self._registrations.values())
        candidates.sort(key=lambda r: (-scores[r.order], _rank(r)))
        closest = tuple(candidates[:3])
        if not closest:
            return NoMatch(f"no registration matches {query}: the registry is empty", ())
        lines = [
            f"{r.name!r} ({r.kind.value}) "
            + _shortfall(r, want_all, want_any, want_none, kind, backend)
            for r in closest
        ]
        return NoMatch(f"no registration matches {query}; closest: " + "; ".join(lines), closest)


def _rank(reg: Registration) -> tuple[int, int]:
    return (-reg.preference, reg.order)


def _labels(attributes: Iterable[Attribute]) -> str:
    return "[" + ", ".join(attribute_label(a) for a in attributes) + "]"


def _describe_query(
    want_all: tuple[Attribute, ...],
    want_any: tuple[Attribute, ...],
    want_none: tuple[Attribute, ...],
    kind: Kind | None,
    backend: str | None,
) -> str:
    parts = []
    if want_all:
        parts.append(f"all of {_labels(want_all)}")
    if want_any:
        parts.append(f"any of {_labels(want_any)}")
    if want_none:
        parts.append(f"none of {_labels(want_none)}")
    if kind is not None:
        parts.append(f"kind {kind.value}")
    if backend is not None:
        parts.append(f"backend {backend!r}")
    return ", ".join(parts)


def _shortfall(
    reg: Registration,
    want_all: tuple[Attribute, ...],
    want_any: tuple[Attribute, ...],
    want_none: tuple[Attribute, ...],
    kind: Kind | None,
    backend: str | None,
) -> str:
    problems = []
    lacks = [a for a in want_all if a not in reg.keys]
    if lacks:
        problems.append(f"lacks {_labels(lacks)}")
    if want_any and not any(a in reg.keys for a in want_any):
        problems.append(f"has none of {_labels(want_any)}")
    excluded = [a for a in want_none if a in reg.keys]
    if excluded:
        problems.append(f"has excluded {_labels(excluded)}")
    if kind is not None and reg.kind is not kind:
        problems.append(f"is a {reg.kind.value}")
    if backend is not None and reg.backend != backend:
        problems.append(f"belongs to backend {reg.backend!r}")
    return ", ".join(problems) or "matches"
