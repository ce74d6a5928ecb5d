from typing import Any

from taskflow.conductors.base import Conductor
from taskflow.engines.base import Engine
from taskflow.jobs.base import Job, JobBoard
from taskflow.persistence.base import Backend
from taskflow.persistence.models import FlowDetail

class BlockingConductor(Conductor):
    # NOTE: private members that subclasses use (ExecutorConductor's hooks).
    _name: str
    _jobboard: JobBoard
    _persistence: Backend
    _engine: str
    _engine_options: dict[str, Any]
    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: Backend | None = None,
        engine: str | None = None,
        engine_options: dict[str, Any] | None = None,
        wait_timeout: float | None = None,
        log: Any = None,
        max_simultaneous_jobs: int = ...,
    ) -> None: ...
    def run(self, max_dispatches: int | None = None) -> None: ...
    def stop(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def _flow_detail_from_job(self, job: Job) -> FlowDetail: ...
    def _engine_from_job(self, job: Job) -> Engine: ...
    def _dispatch_job(self, job: Job) -> bool: ...
