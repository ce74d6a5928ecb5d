import abc
from collections.abc import Iterator
from typing import Any, Final, Self

from taskflow.retry import Retry
from taskflow.task import Task

LINK_INVARIANT: Final = "invariant"
LINK_MANUAL: Final = "manual"
LINK_RETRY: Final = "retry"
LINK_REASONS: Final = "reasons"
LINK_DECIDER: Final = "decider"
LINK_DECIDER_DEPTH: Final = "decider_depth"

# Only tasks and flows can be nodes (the compiler rejects any other atom).
_Node = Task | "Flow"

class Flow(metaclass=abc.ABCMeta):
    def __init__(self, name: str, retry: Retry | None = None) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def retry(self) -> Retry | None: ...
    @abc.abstractmethod
    def add(self, *items: _Node) -> Self: ...
    @abc.abstractmethod
    def __len__(self) -> int: ...
    @abc.abstractmethod
    def __iter__(self) -> Iterator[_Node]: ...
    @abc.abstractmethod
    def iter_links(self) -> Iterator[tuple[_Node, _Node, dict[str, Any]]]: ...
    @abc.abstractmethod
    def iter_nodes(self) -> Iterator[tuple[_Node, dict[str, Any]]]: ...
    @property
    def provides(self) -> frozenset[str]: ...
    @property
    @abc.abstractmethod
    def requires(self) -> frozenset[str]: ...
