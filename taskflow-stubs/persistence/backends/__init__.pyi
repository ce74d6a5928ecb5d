import contextlib
from typing import Any, Final

from taskflow.persistence.base import Backend

BACKEND_NAMESPACE: Final = "taskflow.persistence"

# ``conf`` is either a URI string (``sqlite:///x.db``, ``memory://``) or a dict
# with a ``connection`` key; extra kwargs go to the backend (e.g. ``engine=``).
def fetch(conf: dict[str, Any] | str, namespace: str = ..., **kwargs: object) -> Backend: ...
def backend(
    conf: dict[str, Any] | str, namespace: str = ..., **kwargs: object
) -> contextlib.AbstractContextManager[Backend]: ...
