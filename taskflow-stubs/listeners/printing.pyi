from collections.abc import Iterable

from taskflow.engines.base import Engine
from taskflow.listeners.base import DumpingListener

class PrintingListener(DumpingListener):
    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = ...,
        flow_listen_for: Iterable[str] = ...,
        retry_listen_for: Iterable[str] = ...,
        stderr: bool = False,
    ) -> None: ...
    def _dump(self, message: str, *args: object, **kwargs: object) -> None: ...
