from collections.abc import Mapping

from taskflow.flow import Flow
from taskflow.persistence.base import Backend
from taskflow.persistence.models import FlowDetail, LogBook
from taskflow.task import Task

def temporary_log_book(backend: Backend | None = None) -> LogBook: ...
def temporary_flow_detail(
    backend: Backend | None = None, meta: Mapping[str, object] | None = None
) -> tuple[LogBook, FlowDetail]: ...
def create_flow_detail(
    flow: Flow | Task,
    book: LogBook | None = None,
    backend: Backend | None = None,
    meta: Mapping[str, object] | None = None,
) -> FlowDetail: ...
