"""Each capability's contract is written once: base classes agree with interfaces."""

from __future__ import annotations

import ast
import inspect
import sys

import pytest
from zope.interface import Interface, implementer
from zope.interface.interface import InterfaceClass, Method

from pieceworks import protocols
from pieceworks.protocols import CAPABILITIES
from pieceworks.protocols._contract import restates
from pieceworks.protocols._zope import declared_interfaces

BASES = [
    protocols.Snapshot,
    protocols.StreamOut,
    protocols.StreamIn,
    protocols.PushToObjectStore,
    protocols.PullFromObjectStore,
    protocols.Compress,
    protocols.AllocatedExtents,
    protocols.ChangedBlocks,
    protocols.ObjectStore,
    protocols.ReplicateToPeer,
]


def _interface_annotations(iface: InterfaceClass) -> dict[str, tuple[list[str], str]]:
    """Parameter and return annotations of each method, read from the interface's source."""
    tree = ast.parse(inspect.getsource(sys.modules[iface.__module__]))
    cls = next(
        n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == iface.__name__
    )
    out = {}
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef):
            params = [ast.unparse(a.annotation) for a in fn.args.args if a.annotation]
            out[fn.name] = (params, ast.unparse(fn.returns) if fn.returns else "None")
    return out


def test_every_capability_has_exactly_one_base_class() -> None:
    """Every published capability has one base class that implements it."""
    by_iface = {declared_interfaces(b)[0]: b for b in BASES}
    assert set(by_iface) == set(CAPABILITIES.values())


@pytest.mark.parametrize("base", BASES, ids=lambda b: b.__name__)
def test_base_class_restates_names_signatures_and_docs(base: type) -> None:
    """Each base method has the interface's parameters, annotations and docstring."""
    (iface,) = declared_interfaces(base)
    annotations = _interface_annotations(iface)
    assert set(annotations) == set(iface.names(all=True))
    for name, (params, returns) in annotations.items():
        desc = iface[name]
        assert isinstance(desc, Method)
        sig = inspect.signature(getattr(base, name))
        got_params = [str(p.annotation) for p in list(sig.parameters.values())[1:]]
        assert got_params == params, f"{base.__name__}.{name}"
        assert str(sig.return_annotation) == returns, f"{base.__name__}.{name}"
        assert getattr(base, name).__doc__ == desc.__doc__, f"{base.__name__}.{name}"
        assert desc.__doc__, f"{iface.__name__}.{name} has no docstring for driver authors"


def test_restates_refuses_a_base_class_that_drifted() -> None:
    """A base class whose parameters differ from its interface fails at import time."""

    class IThing(Interface):
        def do(a: int) -> None:
            """Do it."""

    with pytest.raises(TypeError, match=r"Drifted\.do\('b',\) does not match IThing\.do\('a',\)"):

        @restates
        @implementer(IThing)
        class Drifted:
            def do(self, b: int) -> None: ...


def test_restates_refuses_a_base_class_missing_a_method() -> None:
    """A base class that omits an interface method fails at import time."""

    class IThing(Interface):
        def do() -> None:
            """Do it."""

    with pytest.raises(TypeError, match=r"Incomplete does not restate IThing\.do"):

        @restates
        @implementer(IThing)
        class Incomplete:  # type: ignore[misc]  # deliberately incomplete
            pass


def test_capabilities_are_tagged_with_their_names() -> None:
    """Every interface carries its capability name, used in messages and the CLI."""
    for name, iface in CAPABILITIES.items():
        assert protocols.capability_name(iface) == name
