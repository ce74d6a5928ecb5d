import abc
import enum
from collections.abc import Iterator, Sequence
from typing import Any, Final

from taskflow.atom import Atom, _Provides, _Rebind, _Requires
from taskflow.types.failure import Failure

class Decision(enum.StrEnum):
    REVERT = "REVERT"
    REVERT_ALL = "REVERT_ALL"
    RETRY = "RETRY"

REVERT: Final = Decision.REVERT
REVERT_ALL: Final = Decision.REVERT_ALL
RETRY: Final = Decision.RETRY
EXECUTE_REVERT_HISTORY: Final = "history"
REVERT_FLOW_FAILURES: Final = "flow_failures"

# One history entry: (value the retry provided, {atom name: failure}).
_Attempt = tuple[Any, dict[str, Failure]]

class History:
    def __init__(self, contents: list[_Attempt], failure: Failure | None = None) -> None: ...
    @property
    def failure(self) -> Failure | None: ...
    def outcomes_iter(self, index: int | None = None) -> Iterator[tuple[str, Failure]]: ...
    def __len__(self) -> int: ...
    def provided_iter(self) -> Iterator[Any]: ...
    def __getitem__(self, index: int) -> _Attempt: ...
    def caused_by(
        self,
        exception_cls: type[BaseException] | str,
        index: int | None = None,
        include_retry: bool = False,
    ) -> bool: ...
    def __iter__(self) -> Iterator[_Attempt]: ...

class Retry(Atom):
    # ``history`` (a History) is passed to execute/revert/on_failure by keyword.
    def __init__(
        self,
        name: str | None = None,
        provides: _Provides = None,
        requires: _Requires = None,
        auto_extract: bool = True,
        rebind: _Rebind = None,
    ) -> None: ...
    @abc.abstractmethod
    def execute(self, *args: Any, **kwargs: Any) -> object: ...
    def revert(self, *args: Any, **kwargs: Any) -> object: ...
    @abc.abstractmethod
    def on_failure(self, *args: Any, **kwargs: Any) -> Decision: ...

class AlwaysRevert(Retry):
    def on_failure(self, *args: object, **kwargs: object) -> Decision: ...
    def execute(self, *args: object, **kwargs: object) -> None: ...

class AlwaysRevertAll(Retry):
    def on_failure(self, **kwargs: object) -> Decision: ...
    def execute(self, **kwargs: object) -> None: ...

class Times(Retry):
    def __init__(
        self,
        attempts: int = 1,
        name: str | None = None,
        provides: _Provides = None,
        requires: _Requires = None,
        auto_extract: bool = True,
        rebind: _Rebind = None,
        revert_all: bool = False,
    ) -> None: ...
    def on_failure(self, history: History, *args: object, **kwargs: object) -> Decision: ...
    def execute(self, history: History, *args: object, **kwargs: object) -> int: ...

class ForEachBase(Retry, metaclass=abc.ABCMeta):
    def __init__(
        self,
        name: str | None = None,
        provides: _Provides = None,
        requires: _Requires = None,
        auto_extract: bool = True,
        rebind: _Rebind = None,
        revert_all: bool = False,
    ) -> None: ...

class ForEach(ForEachBase):
    def __init__(
        self,
        values: Sequence[object],
        name: str | None = None,
        provides: _Provides = None,
        requires: _Requires = None,
        auto_extract: bool = True,
        rebind: _Rebind = None,
        revert_all: bool = False,
    ) -> None: ...
    def on_failure(self, history: History, *args: object, **kwargs: object) -> Decision: ...
    def execute(self, history: History, *args: object, **kwargs: object) -> object: ...

class ParameterizedForEach(ForEachBase):
    def on_failure(
        self, values: Sequence[object], history: History, *args: object, **kwargs: object
    ) -> Decision: ...
    def execute(
        self, values: Sequence[object], history: History, *args: object, **kwargs: object
    ) -> object: ...
