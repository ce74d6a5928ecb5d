"""Run-time signature checks of a driver's methods, as strict as mypy-zope is statically.

`zope.interface.verify` compares method names and argument counts only. A
driver can pass it and still take an ``int`` where the interface passes a
`Source`, return ``str`` where it promises ``Sequence[Extent]``, or be an
``async def`` that returns a coroutine nobody awaits. `signature_problems`
compares each method of an interface with the annotated base class that
restates it (`pieceworks.protocols._contract.restates`):

* parameters: the driver must accept what the interface passes (its
  annotation is the interface's, a wider type, ``object`` or ``Any``);
* return: the driver must return what the interface promises (the same
  type, a subtype, or for a `typing.Protocol` a class with its members);
* ``async def`` (or an async generator) where the interface is synchronous.

A missing annotation is not a problem here (it is ``Any`` to mypy too); an
annotation that cannot be resolved at run time (a name imported only under
``TYPE_CHECKING``) is skipped, not guessed. Written by hand because no
library checks one annotation against another (typeguard and beartype
check values against annotations, not annotations against each other).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Protocol, Union, get_args, get_origin

from zope.interface.interface import InterfaceClass, Method

from pieceworks.protocols._contract import base_class_of

__all__ = ["signature_problems"]


def signature_problems(iface: InterfaceClass, cls: type) -> list[str]:
    """What is wrong with the signatures of `cls`'s methods for `iface`; empty if nothing.

    Each problem starts with the method's name (``open_read: ...``).
    """
    problems: list[str] = []
    for name in iface.names(all=True):
        desc = iface[name]
        if not isinstance(desc, Method):
            continue
        impl = inspect.getattr_static(cls, name, None)
        if isinstance(impl, (staticmethod, classmethod)):
            impl = impl.__func__
        if not callable(impl):
            continue  # zope's own check names a missing member
        if inspect.iscoroutinefunction(impl) or inspect.isasyncgenfunction(impl):
            problems.append(
                f"{name}: is 'async def', but {iface.__name__}.{name} is synchronous"
                " (its caller would get a coroutine, not a result)"
            )
            continue
        reference = _reference(desc, name)
        if reference is None:
            continue
        problems += _compare(name, reference, impl)
    return problems


def _reference(desc: Method, name: str) -> Callable[..., object] | None:
    """The annotated base-class method that restates the interface method `desc`."""
    defining = getattr(desc, "interface", None)
    base = base_class_of(defining) if isinstance(defining, InterfaceClass) else None
    method = getattr(base, name, None) if base is not None else None
    return method if callable(method) else None


def _hints(func: Callable[..., object]) -> dict[str, Any] | None:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: do not guess
        return None


def _compare(name: str, reference: Callable[..., object], impl: Callable[..., object]) -> list[str]:
    want, got = _hints(reference), _hints(impl)
    if want is None or got is None:
        return []
    problems: list[str] = []
    ref_params = list(inspect.signature(reference).parameters)[1:]
    impl_params = list(inspect.signature(impl).parameters)[1:]
    for ref_param, impl_param in zip(ref_params, impl_params, strict=False):
        if ref_param not in want or impl_param not in got:
            continue
        if _accepts(got[impl_param], want[ref_param]) is False:
            problems.append(
                f"{name}: parameter {impl_param!r} is annotated {_show(got[impl_param])},"
                f" but the interface passes {_show(want[ref_param])}"
            )
    if "return" in want and "return" in got and _accepts(want["return"], got["return"]) is False:
        problems.append(
            f"{name}: returns {_show(got['return'])}, but the interface promises"
            f" {_show(want['return'])}"
        )
    return problems


def _show(tp: object) -> str:
    """A type as a reader writes it: ``VolumeRef | SnapshotRef``, ``Sequence[Extent]``."""
    members = _members(tp)
    if len(members) > 1:
        return " | ".join(_show(m) for m in members)
    if tp is None or tp is type(None):
        return "None"
    origin, args = get_origin(tp), get_args(tp)
    if origin is not None and args:
        return f"{_show(origin)}[{', '.join(_show(a) for a in args)}]"
    name = getattr(tp, "__name__", None)
    return name if isinstance(name, str) else str(tp).replace("typing.", "")


def _members(tp: object) -> tuple[object, ...]:
    """The members of a union (``X | Y``, ``Optional``), else `tp` alone."""
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return (tp,)


def _accepts(expected: object, given: object) -> bool | None:
    """Whether a value of type `given` is acceptable where `expected` is declared.

    True or False when the two can be compared, None when they cannot
    (type variables, callables, literals...): the caller then says nothing.
    """
    if expected in (Any, object) or given is Any:
        return True
    if given is None:
        given = type(None)
    if expected is None:
        expected = type(None)
    givens, expecteds = _members(given), _members(expected)
    if len(givens) > 1:
        results = [_accepts(expected, g) for g in givens]
        return None if None in results else all(results)
    if len(expecteds) > 1:
        results = [_accepts(e, given) for e in expecteds]
        return True if True in results else (None if None in results else False)
    return _accepts_one(expected, given)


def _accepts_one(expected: object, given: object) -> bool | None:
    expected_origin = get_origin(expected) or expected
    given_origin = get_origin(given) or given
    if not isinstance(expected_origin, type) or not isinstance(given_origin, type):
        return None
    if _is_protocol(expected_origin) and not get_args(expected):
        return all(_has_member(given_origin, m) for m in _protocol_members(expected_origin))
    if given_origin is bool and expected_origin is int:
        return True
    if expected_origin is float and given_origin is int:
        return True  # PEP 484's numeric tower
    try:
        if not issubclass(given_origin, expected_origin):
            return False
    except TypeError:
        return None
    expected_args, given_args = get_args(expected), get_args(given)
    if not given_args:
        given_args = _IMPLICIT_ARGS.get(given_origin, ())
    if not expected_args or not given_args:
        return True
    if expected_origin is tuple or len(expected_args) != len(given_args):
        return None
    results = [_accepts(e, g) for e, g in zip(expected_args, given_args, strict=True)]
    if False in results:
        return False
    return None if None in results else True


#: Element types of the builtin sequences that are not generic (``str`` is a ``Sequence[str]``).
_IMPLICIT_ARGS: dict[type, tuple[type, ...]] = {
    str: (str,),
    bytes: (int,),
    bytearray: (int,),
    memoryview: (int,),
}


def _is_protocol(tp: type) -> bool:
    return bool(getattr(tp, "_is_protocol", False)) and tp is not Protocol


def _protocol_members(tp: type) -> set[str]:
    members = getattr(typing, "get_protocol_members", None)
    if members is not None:
        return set(members(tp))
    return {
        n
        for base in tp.__mro__
        if base not in (object, Protocol, typing.Generic)
        for n in vars(base)
        if not n.startswith("_")
    }


def _has_member(cls: type, member: str) -> bool:
    """Whether instances of `cls` have `member` (an attribute, or one annotated or slotted)."""
    return hasattr(cls, member) or any(
        member in getattr(base, "__annotations__", {}) or member in getattr(base, "__slots__", ())
        for base in cls.__mro__
    )
