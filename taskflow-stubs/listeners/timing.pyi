from collections.abc import Callable, Iterable

from taskflow.engines.base import Engine
from taskflow.listeners.base import Listener

class DurationListener(Listener):
    def __init__(self, engine: Engine) -> None: ...

class PrintingDurationListener(DurationListener):
    def __init__(self, engine: Engine, printer: Callable[[str], object] | None = None) -> None: ...

class EventTimeListener(Listener):
    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = ...,
        flow_listen_for: Iterable[str] = ...,
        retry_listen_for: Iterable[str] = ...,
    ) -> None: ...
