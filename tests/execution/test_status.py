"""`jobs show`/`watch` report a job's outcome, never the board's transient COMPLETE."""

from __future__ import annotations

from typing import Any

from taskflow.persistence import models

from pieceworks.execution.status import _status


class _ConsumedJob:
    """A job listed on the board and consumed before its state was read."""

    uuid = "job-1"
    state = "COMPLETE"  # what TaskFlow's Redis board answers once the job's key is gone
    board: Any = None


def _book(state: str) -> models.LogBook:
    book = models.LogBook("book", uuid="book-1")
    book.meta = {"pieceworks": True, "job_uuid": "job-1", "result_atom": "backup-1.manifest"}
    flow = models.FlowDetail("backup-1", uuid="flow-1")
    flow.state = state
    atom = models.TaskDetail("backup-1.manifest", uuid="atom-1")
    atom.state = "SUCCESS"
    atom.results = {"backup_id": "bk-1"}
    flow.add(atom)
    book.add(flow)
    return book


def test_a_job_consumed_between_listing_and_reading_reports_its_flow_s_outcome() -> None:
    """The race of `jobs watch` under load: COMPLETE on the board becomes SUCCESS, with result."""
    status = _status(_book("SUCCESS"), _ConsumedJob())  # type: ignore[arg-type]
    assert status.state == "SUCCESS" and status.done
    assert status.result == {"backup_id": "bk-1"} and status.owner is None


def test_a_consumed_failed_job_reports_failure() -> None:
    status = _status(_book("REVERTED"), _ConsumedJob())  # type: ignore[arg-type]
    assert status.state == "REVERTED" and status.done and status.result is None
