import logging
from typing import Final

from taskflow.conductors.base import Conductor
from taskflow.engines.helpers import _EngineOptions
from taskflow.jobs.base import JobBoard
from taskflow.persistence.base import Backend

CONDUCTOR_NAMESPACE: Final = "taskflow.conductors"

# kind: 'blocking' or 'nonblocking'; keyword arguments are those accepted by
# both shipped conductors (ExecutorConductor subclasses).
def fetch(
    kind: str,
    name: str,
    jobboard: JobBoard,
    namespace: str = ...,
    *,
    persistence: Backend | None = ...,
    engine: str | None = ...,
    engine_options: _EngineOptions | None = ...,
    wait_timeout: float | None = ...,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = ...,
    max_simultaneous_jobs: int = ...,
) -> Conductor: ...
