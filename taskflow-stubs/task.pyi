import abc
from collections.abc import Callable, Mapping
from typing import ClassVar, Final, Self

from taskflow.atom import Atom, _Provides, _Rebind, _Requires
from taskflow.types.notifier import RestrictedNotifier

REVERT_RESULT: Final = "result"
REVERT_FLOW_FAILURES: Final = "flow_failures"
EVENT_UPDATE_PROGRESS: Final = "update_progress"

class Task(Atom, metaclass=abc.ABCMeta):
    TASK_EVENTS: ClassVar[tuple[str, ...]]
    name: str  # defaults to the class name when not given
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
    @property
    def notifier(self) -> RestrictedNotifier: ...
    def copy(self, retain_listeners: bool = True) -> Self: ...
    def update_progress(self, progress: float) -> None: ...

class FunctorTask(Task):
    def __init__(
        self,
        execute: Callable[..., object],
        name: str | None = None,
        provides: _Provides = None,
        requires: _Requires = None,
        auto_extract: bool = True,
        rebind: _Rebind = None,
        revert: Callable[..., object] | None = None,
        version: tuple[int, ...] | str | None = None,
        inject: Mapping[str, object] | None = None,
    ) -> None: ...
    def execute(self, *args: object, **kwargs: object) -> object: ...
    def revert(self, *args: object, **kwargs: object) -> object: ...
