import abc
import datetime
import enum
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self

from taskflow.persistence.base import Backend
from taskflow.persistence.models import LogBook
from taskflow.types.entity import Entity

class JobPriority(enum.Enum):
    VERY_HIGH = "VERY_HIGH"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"
    VERY_LOW = "VERY_LOW"
    @classmethod
    def convert(cls, value: JobPriority | str) -> Self: ...

class Job(metaclass=abc.ABCMeta):
    def __init__(
        self,
        board: JobBoard,
        name: str,
        uuid: str | None = None,
        details: dict[str, Any] | None = None,
        backend: Backend | None = None,
        book: LogBook | None = None,
        book_data: dict[str, Any] | None = None,
    ) -> None: ...
    @property
    @abc.abstractmethod
    def last_modified(self) -> datetime.datetime | None: ...
    @property
    @abc.abstractmethod
    def created_on(self) -> datetime.datetime | None: ...
    @property
    def board(self) -> JobBoard: ...
    @property
    @abc.abstractmethod
    def state(self) -> str: ...
    @property
    @abc.abstractmethod
    def priority(self) -> JobPriority: ...
    def wait(
        self,
        timeout: float | None = None,
        delay: float = 0.01,
        delay_multiplier: float = 2.0,
        max_delay: float = 60.0,
        sleep_func: Callable[[float], object] = ...,
    ) -> bool: ...
    @property
    def book(self) -> LogBook | None: ...
    @property
    def book_uuid(self) -> str | None: ...
    @property
    def book_name(self) -> str | None: ...
    @property
    def uuid(self) -> str: ...
    @property
    def details(self) -> dict[str, Any]: ...
    @property
    def name(self) -> str: ...

class JobBoard(metaclass=abc.ABCMeta):
    def __init__(self, name: str, conf: dict[str, Any]) -> None: ...
    @abc.abstractmethod
    def iterjobs(
        self, only_unclaimed: bool = False, ensure_fresh: bool = False
    ) -> Iterator[Job]: ...
    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> Iterator[Job]: ...
    @property
    @abc.abstractmethod
    def job_count(self) -> int: ...
    @abc.abstractmethod
    def find_owner(self, job: Job) -> str | None: ...
    @property
    def name(self) -> str: ...
    @abc.abstractmethod
    def consume(self, job: Job, who: str) -> None: ...
    @abc.abstractmethod
    def post(
        self,
        name: str,
        book: LogBook | None = None,
        details: Mapping[str, object] | None = None,
        priority: JobPriority | str = ...,
    ) -> Job: ...
    @abc.abstractmethod
    def claim(self, job: Job, who: str) -> None: ...
    @abc.abstractmethod
    def abandon(self, job: Job, who: str) -> None: ...
    @abc.abstractmethod
    def trash(self, job: Job, who: str) -> None: ...
    @abc.abstractmethod
    def register_entity(self, entity: Entity) -> None: ...
    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...
    @abc.abstractmethod
    def connect(self) -> None: ...
    @abc.abstractmethod
    def close(self) -> None: ...
