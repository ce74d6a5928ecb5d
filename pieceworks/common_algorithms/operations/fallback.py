"""`StrategyFallback`: TaskFlow's retry machinery choosing the next strategy.

The retry controls a subflow that carries out "the current strategy". Its
value (the *attempt*) names the strategy and lists the strategies that failed
before it, with their errors, so the final task can record them. When the
subflow fails, TaskFlow reverts it (temporary snapshots are deleted by the
reverting task) and asks `on_failure` what to do: retry with the next
eligible strategy, or revert the whole flow (``REVERT_ALL``, so that steps
taken before the strategies, such as the store lease, are undone too) when
none is left or when the error is one no other strategy can avoid (an
unknown volume, a bad id, corrupt stored data, a worker that cannot take
the request, a garbage collection that outlasted a read lease's wait, a
source that shrank while it was read, a store being encrypted under it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskflow import retry
from taskflow.types.failure import Failure

from pieceworks.common_algorithms.encryption_lock import StoreEncryptedMeanwhile
from pieceworks.common_algorithms.gc.leases import GCLockTimeout
from pieceworks.protocols import (
    CorruptionError,
    IncompatibleRequest,
    InvalidName,
    NotFound,
    ShortRead,
    VolumeExists,
)

__all__ = ["StrategyFallback", "describe_failure"]

#: Errors that mean "stop": every strategy would meet them (an unknown
#: volume or backup, a bad id, stored data that fails its hash, a request the
#: worker of the backend cannot honour, a target volume another run created
#: meanwhile, a live garbage collection a restore's read lease waited out in
#: vain: the next strategy would wait as long again; a source that shrank while
#: read: the next strategy would copy another volume than the one asked for; a
#: store opened plain that a `key init` encrypts meanwhile: run again with the
#: passphrase).
FINAL_ERRORS: tuple[type[Exception], ...] = (
    NotFound,
    InvalidName,
    CorruptionError,
    IncompatibleRequest,
    VolumeExists,
    GCLockTimeout,
    ShortRead,
    StoreEncryptedMeanwhile,
)


def describe_failure(failure: Failure) -> str:
    """``Type: message`` of a TaskFlow failure, for plans, results and logs."""
    names = list(failure)  # iterating a Failure yields its exception type names
    kind = names[0].rsplit(".", 1)[-1] if names else "Error"
    return f"{kind}: {failure.exception_str}"


class StrategyFallback(retry.Retry):
    """Try `strategies` in order; each failure reverts and moves to the next.

    Provides an attempt mapping ``{"strategy": name, "failed": [{"strategy",
    "error"}, ...]}``.
    """

    def __init__(self, strategies: Sequence[str], name: str, provides: str) -> None:
        super().__init__(name=name, provides=provides)
        self.strategies = tuple(strategies)

    def execute(self, history: retry.History, *args: Any, **kwargs: Any) -> dict[str, object]:
        failed = [
            {
                "strategy": str(provided["strategy"]),
                "error": "; ".join(describe_failure(f) for f in outcomes.values()),
            }
            for provided, outcomes in history
        ]
        return {"strategy": self.strategies[len(failed)], "failed": failed}

    def on_failure(self, history: retry.History, *args: Any, **kwargs: Any) -> retry.Decision:
        if any(history.caused_by(e, index=-1) for e in FINAL_ERRORS):
            return retry.REVERT_ALL
        if len(history) < len(self.strategies):
            return retry.RETRY
        return retry.REVERT_ALL

    def revert(self, history: retry.History, *args: Any, **kwargs: Any) -> None:
        """Nothing to undo: choosing a strategy changes nothing."""
