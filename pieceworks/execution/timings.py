"""How long a conductor waits on its workers: the one definition of the defaults.

`pieceworks.execution.dispatch` uses them and ``pieceworks conductor``
offers them as ``--worker-wait``, ``--worker-lost-after`` and
``--worker-queue-timeout``; this module imports nothing, so that the
conductor's help page stays light.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FIND_TIMEOUT", "LOST_AFTER", "QUEUE_TIMEOUT"]

#: Seconds a conductor waits for a worker of a step's backend to answer
#: (``--worker-wait``); none: the step runs in process.
FIND_TIMEOUT: Final = 2.0
#: Seconds without a heartbeat after which a running step's worker is lost
#: (``--worker-lost-after``); the step is submitted again.
LOST_AFTER: Final = 5.0
#: Seconds a submitted step may wait for a worker to start it (TaskFlow's
#: ``transition_timeout``, 60 s by default there; ``--worker-queue-timeout``): a
#: worker heartbeats a step only once it runs it, so this alone bounds the wait for
#: a step queued on a worker that died.
QUEUE_TIMEOUT: Final = 120.0
