import concurrent.futures
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypedDict, Unpack

from taskflow.engines.base import Engine
from taskflow.flow import Flow
from taskflow.persistence.base import Backend
from taskflow.persistence.models import FlowDetail, LogBook
from taskflow.task import Task

ENGINES_NAMESPACE: Final = "taskflow.engines"
ENGINE_DEFAULT: Final = "default"

class _EngineOptions(TypedDict, total=False):
    # action engines
    defer_reverts: bool
    never_resolve: bool
    inject_transient: bool
    gather_statistics: bool
    # parallel engine
    executor: str | concurrent.futures.Executor
    max_workers: int | None
    wait_timeout: float
    # worker-based engine
    url: str | None
    exchange: str
    topics: list[str]
    transport: str | None
    transport_options: dict[str, Any] | None
    retry_options: dict[str, Any] | None
    transition_timeout: float | None
    worker_expiry: float | None

_Root = Flow | Task
# A dict backend config is passed through persistence.backends.fetch().
_BackendArg = Backend | dict[str, Any] | None
_Store = Mapping[str, object] | None
_Factory = Callable[..., _Root] | str

def load(
    flow: _Root,
    store: _Store = None,
    flow_detail: FlowDetail | None = None,
    book: LogBook | None = None,
    backend: _BackendArg = None,
    namespace: str = ...,
    engine: str | None = ...,
    **kwargs: Unpack[_EngineOptions],
) -> Engine: ...
def run(
    flow: _Root,
    store: _Store = None,
    flow_detail: FlowDetail | None = None,
    book: LogBook | None = None,
    backend: _BackendArg = None,
    namespace: str = ...,
    engine: str | None = ...,
    **kwargs: Unpack[_EngineOptions],
) -> dict[str, Any]: ...
def save_factory_details(
    flow_detail: FlowDetail,
    flow_factory: _Factory,
    factory_args: Iterable[object] | None,
    factory_kwargs: Mapping[str, object] | None,
    backend: _BackendArg = None,
) -> None: ...
def load_from_factory(
    flow_factory: _Factory,
    factory_args: Iterable[object] | None = None,
    factory_kwargs: Mapping[str, object] | None = None,
    store: _Store = None,
    book: LogBook | None = None,
    backend: _BackendArg = None,
    namespace: str = ...,
    engine: str | None = ...,
    **kwargs: Unpack[_EngineOptions],
) -> Engine: ...
def flow_from_detail(flow_detail: FlowDetail) -> _Root: ...
def load_from_detail(
    flow_detail: FlowDetail,
    store: _Store = None,
    backend: _BackendArg = None,
    namespace: str = ...,
    engine: str | None = ...,
    **kwargs: Unpack[_EngineOptions],
) -> Engine: ...
