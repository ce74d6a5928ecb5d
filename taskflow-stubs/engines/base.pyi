import abc
from collections.abc import Generator, Mapping
from typing import Any, TypedDict

from taskflow.flow import Flow
from taskflow.persistence.base import Backend
from taskflow.persistence.models import FlowDetail
from taskflow.storage import Storage
from taskflow.task import Task
from taskflow.types.notifier import Notifier

class _Statistics(TypedDict, total=False):
    active_for: float
    seconds_per_state: dict[str, float]
    discarded_failures: int
    awaiting: int
    completed: int
    incomplete: int

class Engine(metaclass=abc.ABCMeta):
    def __init__(
        self,
        flow: Flow | Task,
        flow_detail: FlowDetail,
        backend: Backend | None,
        options: Mapping[str, object] | None,
    ) -> None: ...
    @property
    def notifier(self) -> Notifier: ...
    @property
    def atom_notifier(self) -> Notifier: ...
    @property
    def options(self) -> dict[str, Any]: ...
    @property
    @abc.abstractmethod
    def storage(self) -> Storage: ...
    @property
    @abc.abstractmethod
    def statistics(self) -> _Statistics: ...
    @abc.abstractmethod
    def compile(self) -> None: ...
    @abc.abstractmethod
    def reset(self) -> None: ...
    @abc.abstractmethod
    def prepare(self) -> None: ...
    @abc.abstractmethod
    def validate(self) -> None: ...
    # NOTE: the real abstract base declares ``run(self)`` and no ``run_iter``;
    # every engine TaskFlow ships (all ActionEngine subclasses) has both as
    # declared here.
    @abc.abstractmethod
    def run(self, timeout: float | None = None) -> None: ...
    def run_iter(self, timeout: float | None = None) -> Generator[str, object]: ...
    @abc.abstractmethod
    def suspend(self) -> None: ...
