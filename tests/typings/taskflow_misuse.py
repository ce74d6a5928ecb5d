"""TaskFlow misuse our stubs must catch: every line marked `# E:` is a mypy error.

Excluded from the project's own mypy and ruff runs; `test_taskflow_stubs.py`
checks that mypy reports exactly these lines.
"""

from typing import Any

from taskflow import engines, retry, task
from taskflow.engines.worker_based.worker import Worker
from taskflow.jobs.base import JobBoard
from taskflow.patterns import graph_flow as gf, linear_flow as lf
from taskflow.persistence import backends as p_backends
from taskflow.retry import History
from taskflow.types.failure import Failure


class Snapshot(task.Task):
    def execute(self, path: str) -> int:
        return len(path)


class BadRetry(retry.Retry):
    def execute(self, history: History) -> int:
        return 1

    def on_failure(self, history: History) -> str:  # E: override (must return Decision)
        return "RETRY"


def on_event(state: str, details: dict[str, Any]) -> None: ...


flow = lf.Flow("f")
flow.add("x")  # E: arg-type (flow.add rejects non-atoms)
flow.add(retry.Times())  # E: arg-type (a retry is not a flow node)
snap = Snapshot()
snap.execute(3)  # E: arg-type (subclass signature is kept)
base: task.Task = snap
n: int = base.execute("p")  # E: assignment (base execute returns object, not Any)
engines.load(flow, store=["path"])  # E: arg-type (store must be a mapping)
engines.load("not-a-flow")  # E: arg-type (flow must be Flow | Task)
engines.load(flow, max_worker=2)  # E: misc (unknown engine option)
engines.load(flow, executor=3)  # E: arg-type (executor is str | Executor)
engines.run(flow, backend="sqlite://")  # E: arg-type (backend is Backend | dict)
engines.load(flow).run(timeout="soon")  # E: arg-type
gf.Flow("g").link(snap, snap, decider=lambda: True)  # E: arg-type (decider gets history=)
engines.load(flow).notifier.register("*", lambda: None)  # E: (callback needs (event, details=))
retry.ForEach(5)  # E: arg-type
p_backends.fetch(42)  # E: arg-type
Worker("x", "t", tasks=[Snapshot]).wait(timeout=1)  # E: call-arg (Worker.wait takes no timeout)
Failure().exception_type_names  # E: attr-defined (not a real attribute)
History([]).provides_iter()  # E: attr-defined (it is provided_iter)


def post(board: JobBoard) -> None:
    board.post("job", priority=3)  # E: arg-type
    board.claim(board.post("job"), who=None)  # E: arg-type
