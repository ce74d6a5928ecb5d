import abc
from typing import ClassVar

from taskflow.engines.helpers import _EngineOptions
from taskflow.jobs.base import JobBoard
from taskflow.persistence.base import Backend
from taskflow.types.entity import Entity
from taskflow.types.notifier import Notifier

class Conductor(metaclass=abc.ABCMeta):
    ENTITY_KIND: ClassVar[str]
    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: Backend | None = None,
        engine: str | None = None,
        engine_options: _EngineOptions | None = None,
    ) -> None: ...
    @property
    def conductor(self) -> Entity: ...
    @property
    def notifier(self) -> Notifier: ...
    def connect(self) -> None: ...
    def close(self) -> None: ...
    @abc.abstractmethod
    def run(self, max_dispatches: int | None = None) -> None: ...
    @abc.abstractmethod
    def stop(self) -> None: ...
    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> bool: ...
    # NOTE: defined by ExecutorConductor, the base of both shipped conductors
    # ('blocking' and 'nonblocking'), not by the abstract base itself.
    @property
    def dispatching(self) -> bool: ...
