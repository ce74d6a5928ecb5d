"""Defer the parts of TaskFlow's import that a flow run in this process never uses.

``taskflow.types.failure`` (imported by every TaskFlow module) imports
``taskflow.utils.schema_utils``, which imports jsonschema (and with it
referencing, attrs and rpds: about 70 ms, a sixth of a command's start-up),
only to validate a failure read back from persistence; ``taskflow.utils.misc``
imports oslo.utils' ``netutils`` (which imports psutil and netaddr) to split
URIs and oslo.serialization's ``msgpackutils`` (msgpack) to load binary
data, and oslo.serialization's ``jsonutils`` looks netaddr up for IP address
values: none of them at import time. Likewise ``jsonutils`` imports
``xmlrpc.client`` (with http.client, ssl and email: about 15 ms) only to
recognise its ``DateTime`` values, and futurist's debtcollector brings wrapt,
whose ``synchronization`` module imports asyncio (about 10 ms) for
coroutine functions it is given at run time: a flow uses neither. `defer` puts a finder
on ``sys.meta_path`` that gives the modules of `DEFERRED` an
`importlib.util.LazyLoader`: such a module is executed, and jsonschema
imported, the first time one of its attributes is used, and never if none
is. Nothing else changes: same module, same attributes, same errors.
`defer` imports nothing of TaskFlow itself, and does nothing for a module
already imported.

oslo.utils' ``strutils`` is different: TaskFlow's engine calls its
``bool_from_string`` each time an engine is built, so deferring the module
would save nothing, but importing it compiles about 430 regular expressions
(about 80 ms, a sixth of a 1 MiB backup) for ``mask_password``, which
TaskFlow never calls. The modules of `LAZY_PATTERNS` run their own code with
their own functions, as ever, except that their ``re`` is `_LazyRe`:
``re.compile`` there returns a `_LazyPattern`, compiled by the real ``re`` the
first time it is used. Every other name of ``re`` is the real one. A pattern
with an error fails when first used instead of at import.
"""

from __future__ import annotations

import builtins
import importlib.util
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:  # importlib.abc costs 8 ms at run time, where duck typing does
    from importlib.abc import Loader

__all__ = ["DEFERRED", "LAZY_PATTERNS", "defer"]

#: The modules `defer` loads lazily.
DEFERRED: Final = frozenset(
    {
        "taskflow.utils.schema_utils",
        "oslo_utils.netutils",
        "oslo_serialization.msgpackutils",
        "netaddr",
        "xmlrpc.client",
        "asyncio",
    }
)


#: The modules whose regular expressions `defer` compiles on first use.
LAZY_PATTERNS: Final = frozenset({"oslo_utils.strutils"})


class _LazyPattern:
    """A compiled pattern of the real ``re``, compiled when first used.

    Every attribute (``match``, ``sub``, ``pattern``, ``flags``...) is the
    compiled pattern's own. Two threads using it first may both compile it:
    the results are equal.
    """

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str | bytes, flags: int) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[Any] | None = None

    def _pattern(self) -> re.Pattern[Any]:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(*self._args)
        return compiled

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pattern(), name)

    def __repr__(self) -> str:
        return repr(self._pattern())


#: The functions of ``re`` that take a pattern first: given a `_LazyPattern`, they
#: get it compiled.
_TAKING_PATTERNS: Final = frozenset(
    {"match", "fullmatch", "search", "sub", "subn", "split", "findall", "finditer"}
)


def _compiled_first(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(pattern: object, *args: Any, **kwargs: Any) -> Any:
        if isinstance(pattern, _LazyPattern):
            pattern = pattern._pattern()
        return function(pattern, *args, **kwargs)

    return call


class _LazyRe(ModuleType):
    """``re`` for a module of `LAZY_PATTERNS`: `compile` defers; ``re.sub(pattern, ...)``
    and the other functions of `_TAKING_PATTERNS` accept what it returns; every
    other name is ``re``'s own."""

    def __init__(self) -> None:
        super().__init__("re")

    @staticmethod
    def compile(pattern: str | bytes | _LazyPattern, flags: int = 0) -> _LazyPattern:
        if isinstance(pattern, _LazyPattern):
            if flags:
                raise ValueError("cannot process flags argument with a compiled pattern")
            return pattern
        return _LazyPattern(pattern, flags)

    def __getattr__(self, name: str) -> Any:
        found = getattr(re, name)
        if name in _TAKING_PATTERNS:
            found = _compiled_first(found)
            setattr(self, name, found)
        return found


def _importing_lazy_re(real: Callable[..., ModuleType]) -> Callable[..., ModuleType]:
    """``__import__`` that gives `_LazyRe` for ``import re`` and is `real` otherwise."""
    lazy_re = _LazyRe()

    def import_(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> ModuleType:
        if name == "re" and level == 0 and not fromlist:
            return lazy_re
        return real(name, globals, locals, fromlist, level)

    return import_


class _LazyPatternsLoader:
    """Run a module with `_LazyRe` as its ``re`` (see the module docstring): an
    ``importlib.abc.Loader`` by its methods."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        own = dict(vars(builtins))
        own["__import__"] = _importing_lazy_re(builtins.__import__)
        module.__dict__["__builtins__"] = own
        self._loader.exec_module(module)


class _LazyFinder:
    """A ``sys.meta_path`` finder: the spec of the next finder, with a lazy loader."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name not in DEFERRED and name not in LAZY_PATTERNS:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    if name in LAZY_PATTERNS:
                        spec.loader = cast("Loader", _LazyPatternsLoader(spec.loader))
                    else:
                        spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


_FINDER: Final = _LazyFinder()


def defer() -> None:
    """Load the modules of `DEFERRED` on first use, and compile the patterns of
    `LAZY_PATTERNS` on first use, from now on (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
