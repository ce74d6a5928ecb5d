import abc
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Set
from typing import Any, ClassVar

# What ``provides=`` accepts: one name, an ordered sequence (results indexed by
# position) or a set (results indexed by key).
_Provides = str | list[str] | tuple[str, ...] | set[str] | frozenset[str] | None
_Requires = str | Iterable[str] | None
_Rebind = dict[str, str] | list[str] | tuple[str, ...] | None

class Atom(metaclass=abc.ABCMeta):
    priority: int
    default_provides: ClassVar[_Provides]
    name: str | None
    version: tuple[int, ...] | str
    inject: Mapping[str, object] | None
    save_as: OrderedDict[str, int | str | None]
    provides: Set[str]
    requires: Set[str]
    optional: Set[str]
    rebind: OrderedDict[str, str]
    revert_rebind: OrderedDict[str, str]
    revert_optional: Set[str]
    def __init__(
        self,
        name: str | None = None,
        provides: _Provides = None,
        requires: _Requires = None,
        auto_extract: bool = True,
        rebind: _Rebind = None,
        inject: Mapping[str, object] | None = None,
        ignore_list: list[str] | None = None,
        revert_rebind: _Rebind = None,
        revert_requires: _Requires = None,
    ) -> None: ...
    def pre_execute(self) -> None: ...
    # ``(*args: Any, **kwargs: Any)`` is treated by mypy as a gradual ``...``
    # signature, so subclasses may override with any concrete signature and
    # keep it (the engine calls these with keyword arguments by name).
    @abc.abstractmethod
    def execute(self, *args: Any, **kwargs: Any) -> object: ...
    def post_execute(self) -> None: ...
    def pre_revert(self) -> None: ...
    def revert(self, *args: Any, **kwargs: Any) -> object: ...
    def post_revert(self) -> None: ...
