import contextlib
from typing import Any, Final

from taskflow.jobs.base import JobBoard
from taskflow.persistence.base import Backend

BACKEND_NAMESPACE: Final = "taskflow.jobboards"

# ``conf`` is a URI string (``redis://host:6379``) or a dict with a ``board``
# key; extra kwargs (``client=``, ``persistence=``...) go to the board.
def fetch(
    name: str,
    conf: dict[str, Any] | str,
    namespace: str = ...,
    *,
    persistence: Backend | None = ...,
    **kwargs: object,
) -> JobBoard: ...
def backend(
    name: str,
    conf: dict[str, Any] | str,
    namespace: str = ...,
    *,
    persistence: Backend | None = ...,
    **kwargs: object,
) -> contextlib.AbstractContextManager[JobBoard]: ...
