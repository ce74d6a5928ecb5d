from typing import Final

CLAIMED: Final = "CLAIMED"
COMPLETE: Final = "COMPLETE"
UNCLAIMED: Final = "UNCLAIMED"
FAILURE: Final = "FAILURE"
PENDING: Final = "PENDING"
REVERTING: Final = "REVERTING"
REVERTED: Final = "REVERTED"
RUNNING: Final = "RUNNING"
SUCCESS: Final = "SUCCESS"
SUSPENDING: Final = "SUSPENDING"
SUSPENDED: Final = "SUSPENDED"
RESUMING: Final = "RESUMING"
RETRYING: Final = "RETRYING"
IGNORE: Final = "IGNORE"
REVERT_FAILURE: Final = "REVERT_FAILURE"
EXECUTE: Final = "EXECUTE"
REVERT: Final = "REVERT"
RETRY: Final = "RETRY"
INTENTIONS: Final[tuple[str, str, str, str]]
SCHEDULING: Final = "SCHEDULING"
WAITING: Final = "WAITING"
ANALYZING: Final = "ANALYZING"

def check_job_transition(old_state: str, new_state: str) -> bool: ...
def check_flow_transition(old_state: str, new_state: str) -> bool: ...
def check_task_transition(old_state: str, new_state: str) -> bool: ...
def check_retry_transition(old_state: str, new_state: str) -> bool: ...
