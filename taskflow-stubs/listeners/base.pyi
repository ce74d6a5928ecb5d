import abc
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final, Self

from taskflow.engines.base import Engine

FINISH_STATES: Final[tuple[str, ...]]
DEFAULT_LISTEN_FOR: Final[tuple[str, ...]]

class Listener:
    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = ...,
        flow_listen_for: Iterable[str] = ...,
        retry_listen_for: Iterable[str] = ...,
    ) -> None: ...
    # Override points (called with the new state and the event details).
    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None: ...
    def _task_receiver(self, state: str, details: dict[str, Any]) -> None: ...
    def _retry_receiver(self, state: str, details: dict[str, Any]) -> None: ...
    def deregister(self) -> None: ...
    def register(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        type: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

class DumpingListener(Listener, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    def _dump(self, message: str, *args: object, **kwargs: object) -> None: ...
