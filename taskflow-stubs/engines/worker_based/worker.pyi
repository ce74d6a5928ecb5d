import concurrent.futures
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from taskflow.task import Task

class Worker:
    # tasks: "pkg.module", "pkg.module:Class", a module, or a Task subclass.
    def __init__(
        self,
        exchange: str,
        topic: str,
        tasks: Iterable[str | ModuleType | type[Task]],
        executor: concurrent.futures.Executor | None = None,
        threads_count: int | None = None,
        url: str | None = None,
        transport: str | None = None,
        transport_options: dict[str, Any] | None = None,
        retry_options: dict[str, Any] | None = None,
    ) -> None: ...
    @property
    def banner(self) -> str: ...
    def run(
        self, display_banner: bool = True, banner_writer: Callable[[str], object] | None = None
    ) -> None: ...
    def wait(self) -> None: ...
    def stop(self) -> None: ...
