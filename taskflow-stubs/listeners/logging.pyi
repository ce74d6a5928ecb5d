import logging
from collections.abc import Iterable

from taskflow.engines.base import Engine
from taskflow.listeners.base import DumpingListener, Listener

_Log = logging.Logger | logging.LoggerAdapter[logging.Logger]

class LoggingListener(DumpingListener):
    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = ...,
        flow_listen_for: Iterable[str] = ...,
        retry_listen_for: Iterable[str] = ...,
        log: _Log | None = None,
        level: int = ...,
    ) -> None: ...
    def _dump(self, message: str, *args: object, **kwargs: object) -> None: ...

class DynamicLoggingListener(Listener):
    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = ...,
        flow_listen_for: Iterable[str] = ...,
        retry_listen_for: Iterable[str] = ...,
        log: _Log | None = None,
        failure_level: int = ...,
        level: int = ...,
        hide_inputs_outputs_of: Iterable[str] = ...,
        fail_formatter: object | None = None,
        mask_inputs_keys: Iterable[str] = ...,
        mask_outputs_keys: Iterable[str] = ...,
    ) -> None: ...
