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

import difflib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, replace

from taskflow.flow import Flow
from taskflow.task import Task

from pieceworks.protocols import NotFound, verify_driver
from pieceworks.registry.attributes import Attribute, attribute_label, expand, normalise
from pieceworks.registry.errors import BuildArgumentError, ForeignRegistration, NotBuildable
from pieceworks.registry.registration import (
    Feasibility,
    Kind,
    Registrable,
    Registration,
    default_summary,
)

__all__ = ["NoMatch", "Registry"]

_EMPTY: frozenset[int] = frozenset()


class NoMatch(NotFound):
    """A search matched no registration, or none that can be built for the request.

    The message names the query and the closest registrations with what
    each lacks; `closest` holds those registrations. `suggestions` maps each
    tag asked for that nothing is registered under to the closest known
    tags (computed with difflib when first read: a caller that only catches
    the miss does not pay for it); the message ends with them. `reasons`
    maps the name of each match refused for the request to why it cannot
    be built for it.
    """

    def __init__(
        self,
        message: str,
        closest: tuple[Registration, ...],
        *,
        unknown: tuple[str, ...] = (),
        known: tuple[str, ...] = (),
        reasons: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.closest = closest
        self.reasons = dict(reasons or {})
        self._unknown, self._known = unknown, known
        self._suggestions: dict[str, tuple[str, ...]] | None = None

    @property
    def suggestions(self) -> dict[str, tuple[str, ...]]:
        """Each unknown tag asked for → up to three close known tags (none: left out)."""
        if self._suggestions is None:
            self._suggestions = {}
            for tag in self._unknown:
                close = difflib.get_close_matches(tag, self._known, n=3)
                if close:
                    self._suggestions[tag] = tuple(close)
        return self._suggestions

    def __str__(self) -> str:
        hint = "".join(
            f"; {tag!r} is registered nowhere: did you mean {' or '.join(map(repr, close))}?"
            for tag, close in self.suggestions.items()
        )
        return super().__str__() + hint


@dataclass(frozen=True)
class _Query:
    want_all: tuple[Attribute, ...]
    want_any: tuple[Attribute, ...]
    want_none: tuple[Attribute, ...]
    kind: Kind | None
    backend: str | None
    buildable: bool

    def accepts(self, reg: Registration) -> bool:
        return (
            (self.kind is None or reg.kind is self.kind)
            and (self.backend is None or reg.backend == self.backend)
            and (not self.buildable or reg.kind.buildable)
        )

    def describe(self) -> str:
        parts = []
        if self.want_all:
            parts.append(f"all of {_labels(self.want_all)}")
        if self.want_any:
            parts.append(f"any of {_labels(self.want_any)}")
        if self.want_none:
            parts.append(f"none of {_labels(self.want_none)}")
        if self.kind is not None:
            parts.append(f"kind {self.kind.value}")
        if self.backend is not None:
            parts.append(f"backend {self.backend!r}")
        if self.buildable:
            parts.append("buildable")
        return ", ".join(parts)

    def shortfall(self, reg: Registration) -> str:
        problems = []
        lacks = [a for a in self.want_all if a not in reg.keys]
        if lacks:
            problems.append(f"lacks {_labels(lacks)}")
        if self.want_any and not any(a in reg.keys for a in self.want_any):
            problems.append(f"has none of {_labels(self.want_any)}")
        excluded = [a for a in self.want_none if a in reg.keys]
        if excluded:
            problems.append(f"has excluded {_labels(excluded)}")
        if self.kind is not None and reg.kind is not self.kind:
            problems.append(f"is a {reg.kind.value}")
        if self.backend is not None and reg.backend != self.backend:
            problems.append(f"belongs to backend {reg.backend!r}")
        if self.buildable and not reg.kind.buildable:
            problems.append(f"is a {reg.kind.value}, which builds nothing")
        return ", ".join(problems) or "matches"


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
        self._token = object()  # marks this registry's registrations

    # -- registering -------------------------------------------------------

    def register(
        self,
        item: Registrable,
        *,
        provides: Iterable[Attribute],
        name: str | None = None,
        preference: int = 0,
        backend: str | None = None,
        summary: str | None = None,
        feasible: Feasibility | None = None,
    ) -> Registration:
        """Register a task, flow, Task subclass or factory under `provides`.

        `preference` ranks it above (higher) or below (lower) other matches;
        equal preferences keep registration order. `backend` records which
        configured backend the item belongs to, so a manager can ask for one
        backend's pieces. `summary` is the one line `describe` shows (the
        item's docstring's first line by default); `feasible` says, for
        given build arguments, why the piece cannot be built for them (see
        `find`'s `request`).
        """
        reg = self._add(item, _kind_of(item), provides, name, preference, backend)
        if summary is not None or feasible is not None:
            changed = replace(
                reg, summary=reg.summary if summary is None else summary, feasible=feasible
            )
            with self._lock:
                self._registrations[reg.order] = changed
                self._cache.clear()
            return changed
        return reg

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
                summary=default_summary(item),
                owner=self._token,
            )
            self._registrations[order] = reg
            for key in keys:
                self._index.setdefault(key, set()).add(order)
            self._ranked = self._ranked or preference != 0
            self._cache.clear()
        return reg

    def unregister(self, registration: Registration) -> None:
        """Remove `registration`; removing it twice is not an error.

        Raise `ForeignRegistration` for a registration another registry made
        (nothing is removed).
        """
        if registration.owner is not self._token:
            raise ForeignRegistration(
                f"registration {registration.name!r} belongs to another registry;"
                " unregister it from the registry that returned it"
            )
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
        buildable: bool = False,
        request: Mapping[str, object] | None = None,
    ) -> list[Registration]:
        """Return the registrations matching the query, best first.

        A match provides every attribute of `all_of`, at least one of
        `any_of` (when given) and none of `none_of`; `kind` and `backend`
        narrow further; `buildable` leaves out what builds no task or flow
        (drivers). With `request` (the build arguments the manager will
        pass), a match that cannot be built for it is left out: its
        arguments do not fit, or its feasibility check refuses them (a
        backend with no eligible strategy for that request). Results are
        ranked by preference, then registration order. Raise `NoMatch` (a
        `NotFound`) when nothing matches; its `reasons` then say why each
        match refused the request.
        """
        want_all = tuple(normalise(a) for a in all_of)
        want_any = tuple(normalise(a) for a in any_of)
        want_none = tuple(normalise(a) for a in none_of)
        if not want_all and not want_any and kind is None and backend is None:
            raise ValueError("find() needs at least one attribute, a kind or a backend")
        key = (want_all, want_any, want_none, kind, backend, buildable)
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                cached = self._search(_Query(*key))
                if self._cache_size > 0:
                    if len(self._cache) >= self._cache_size:
                        self._cache.pop(next(iter(self._cache)))
                    self._cache[key] = cached
        if request is None:
            return list(cached)
        return self._feasible(_Query(*key), cached, request)

    def _feasible(
        self, q: _Query, found: tuple[Registration, ...], request: Mapping[str, object]
    ) -> list[Registration]:
        kept: list[Registration] = []
        reasons: dict[str, str] = {}
        for reg in found:
            reason = _refusal(reg, request)
            if reason is None:
                kept.append(reg)
            else:
                reasons[reg.name] = reason
        if kept:
            return kept
        given = ", ".join(f"{k}={v!r}" for k, v in request.items())
        lines = "; ".join(f"{name!r}: {why}" for name, why in reasons.items())
        raise NoMatch(
            f"no registration matching {q.describe()} can be built for ({given}): {lines}",
            found,
            reasons=reasons,
        )

    def _search(self, q: _Query) -> tuple[Registration, ...]:
        index, regs = self._index, self._registrations
        any_sets = [index.get(a, _EMPTY) for a in q.want_any]
        ids: Set[int]
        if q.want_all:
            sets = sorted((index.get(a, _EMPTY) for a in q.want_all), key=len)
            ids = sets[0].intersection(*sets[1:])
            if any_sets:
                ids = {i for i in ids if any(i in s for s in any_sets)}
        elif any_sets:
            ids = set().union(*any_sets)
        else:
            ids = regs.keys()
        if q.want_none and ids:
            ids = set(ids).difference(*(index.get(a, _EMPTY) for a in q.want_none))
        found = [regs[i] for i in sorted(ids)]
        if q.kind is not None or q.backend is not None or q.buildable:
            found = [r for r in found if q.accepts(r)]
        if not found:
            raise self._no_match(q)
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
        buildable: bool = False,
        request: Mapping[str, object] | None = None,
    ) -> Registration:
        """The best match of `find`; `NoMatch` if there is none."""
        return self.find(
            all_of,
            any_of=any_of,
            none_of=none_of,
            kind=kind,
            backend=backend,
            buildable=buildable,
            request=request,
        )[0]

    def __len__(self) -> int:
        return len(self._registrations)

    def __iter__(self) -> Iterator[Registration]:
        with self._lock:
            regs = list(self._registrations.values())
        regs.sort(key=_rank)
        return iter(regs)

    # -- explaining a miss -------------------------------------------------

    def _no_match(self, q: _Query) -> NoMatch:
        query = q.describe()
        unknown = tuple(
            a
            for a in (*q.want_all, *q.want_any, *q.want_none)
            if isinstance(a, str) and a not in self._index
        )
        known = tuple(k for k in self._index if isinstance(k, str)) if unknown else ()
        scores: Counter[int] = Counter()
        for a in (*q.want_all, *q.want_any):
            for i in self._index.get(a, _EMPTY):
                scores[i] += 1
        candidates = [self._registrations[i] for i in scores] or list(self._registrations.values())
        candidates.sort(key=lambda r: (-scores[r.order], _rank(r)))
        closest = tuple(candidates[:3])
        if not closest:
            return NoMatch(
                f"no registration matches {query}: the registry is empty",
                (),
                unknown=unknown,
                known=known,
            )
        lines = [f"{r.name!r} ({r.kind.value}) " + q.shortfall(r) for r in closest]
        return NoMatch(
            f"no registration matches {query}; closest: " + "; ".join(lines),
            closest,
            unknown=unknown,
            known=known,
        )


def _refusal(reg: Registration, request: Mapping[str, object]) -> str | None:
    """Why `reg` cannot be built with the build arguments `request`, or None."""
    try:
        reg.check_arguments(request)
    except (BuildArgumentError, NotBuildable) as exc:
        return str(exc)
    return reg.feasible(request) if reg.feasible is not None else None


def _rank(reg: Registration) -> tuple[int, int]:
    return (-reg.preference, reg.order)


def _labels(attributes: Iterable[Attribute]) -> str:
    return "[" + ", ".join(attribute_label(a) for a in attributes) + "]"
