import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taskflow.task import Task

class WorkerTaskExecutor:
    def __init__(
        self,
        uuid: str,
        exchange: str,
        topics: Sequence[str],
        transition_timeout: float | None = ...,
        url: str | None = None,
        transport: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        retry_options: Mapping[str, Any] | None = None,
        worker_expiry: float | None = ...,
    ) -> None: ...
    # The future's result is (event, result): the task's return value, or a Failure.
    def execute_task(
        self,
        task: Task,
        task_uuid: str,
        arguments: Mapping[str, Any],
        progress_callback: Callable[..., object] | None = None,
    ) -> concurrent.futures.Future[tuple[str, Any]]: ...
    def wait_for_workers(self, workers: int = 1, timeout: float | None = None) -> int: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
