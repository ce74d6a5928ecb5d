"""Data steps that may run on a worker next to the data, or in process.

A flow's data-moving task (a backup's transfer, a restore's write) is a
`DataStep`: it holds live backend and store objects and runs in the
conductor's process, but first offers its work to `DataStep.dispatcher`
(set by a conductor that has workers, `pieceworks.execution.worker`). The
work itself is a `RemoteStep`: a TaskFlow task built from its NAME only
(``task_cls(name=name)``, as the worker-based engine's endpoints build
tasks) whose ``execute`` takes plain JSON values: the backend and store
NAMES, the request's fields, the earlier steps' results. On a worker it
opens backend and store by name from that host's own configuration
(`use_host`); no option or secret ever travels.

Conductor and worker may run different versions (a rolling upgrade): an
argument the step does not know is ignored with a logged warning, one it
needs that is missing is an `IncompatibleRequest`, never a TypeError; the
request's own fields are decoded the same way
(`operations.requests.decode_request`, with its protocol version).

While a `RemoteStep` runs it emits `HEARTBEAT` events every
`HEARTBEAT_EVERY` seconds (the worker-based engine relays task events to
the engine that asked), so the conductor tells a dead worker from a slow
one.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Final, Protocol, TypeVar

from taskflow import task

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.gc.markers import heartbeat
from pieceworks.protocols import ConfigError, PieceworksError
from pieceworks.protocols.errors import (
    BackendNotFound,
    IncompatibleRequest,
    StoreMissing,
    StoreNotFound,
)

__all__ = [
    "HEARTBEAT",
    "HEARTBEAT_EVERY",
    "DataStep",
    "Dispatcher",
    "HostSections",
    "NotPlaced",
    "NotServedHere",
    "declining",
    "Observer",
    "RemoteStep",
    "StepFailed",
    "host",
    "run_data_step",
    "use_host",
]

log = logging.getLogger(__name__)

#: The task event a running `RemoteStep` emits to show it is alive.
HEARTBEAT: Final = "pieceworks.heartbeat"
#: Seconds between two heartbeats.
HEARTBEAT_EVERY: Final = 1.0

T = TypeVar("T")


class NotPlaced(Exception):
    """No worker took the step (none serves the backend, or it died): run it in process."""


class Dispatcher(Protocol):
    """Runs a `RemoteStep` on a worker that serves `backend` (see execution.worker)."""

    def run(
        self,
        step: type[RemoteStep],
        name: str,
        backend: str,
        arguments: Mapping[str, Any],
        owner: task.Task,
    ) -> Any:
        """The step's result; raise `NotPlaced` to have it run in process.

        Events of the remote task (progress) are re-emitted on `owner`.
        Any other exception is the step's own failure (TaskFlow reverts).
        """


class HostSections(Protocol):
    """This host's backends and stores by name (a worker's configuration)."""

    def backend(self, name: str) -> Backend:
        """The backend configured as `name`; `ConfigError` if none."""

    def store(self, name: str) -> Store:
        """The store configured as `name`; `ConfigError` if none."""


#: Told of each `RemoteStep` that ends here: (step name, result or None, error or None).
Observer = Callable[[str, Mapping[str, Any] | None, BaseException | None], None]

_host: HostSections | None = None
_observer: Observer | None = None
_mask: Callable[[str], str] | None = None


class NotServedHere(PieceworksError):
    """This worker's configuration lacks a backend or store the step names: run it elsewhere."""


@contextmanager
def declining() -> Iterator[None]:
    """A name this host lacks or cannot open (`BackendNotFound`, `StoreNotFound`,
    `ConfigError`, a store whose storage this host does not see: `StoreMissing`,
    never created here) becomes `NotServedHere` inside the block."""
    try:
        yield
    except (ConfigError, BackendNotFound, StoreNotFound, StoreMissing) as exc:
        raise NotServedHere(str(exc)) from None


class StepFailed(PieceworksError):
    """A `RemoteStep` failed on a worker; the message (type and text) is masked."""


def use_host(
    sections: HostSections | None,
    observer: Observer | None = None,
    mask: Callable[[str], str] | None = None,
) -> None:
    """Make `sections` the configuration `RemoteStep`s open names from (a worker calls it).

    `observer` (metrics) is told of each step that ends in this process;
    `mask` cleans a failed step's error text before it is sent back (the
    worker's configured secrets).
    """
    global _host, _observer, _mask
    _host, _observer, _mask = sections, observer, mask


def host() -> HostSections:
    """The configuration set by `use_host`; `ConfigError` in a process that has none."""
    if _host is None:
        raise ConfigError("this process serves no backends: it has no worker configuration")
    return _host


class DataStep:
    """Mixin of an in-flow task whose work may run on a worker (see module docstring)."""

    #: Set by a conductor with workers; None runs every step in process.
    dispatcher: Dispatcher | None = None


class RemoteStep(task.Task):
    """A task built from its name alone; `execute` takes only JSON values.

    Subclasses implement `work(**plain values)` and run it through
    `observed` (heartbeats, the host's observer); `execute` hands `work` the
    arguments it declares (see the module docstring).
    """

    TASK_EVENTS = (task.EVENT_UPDATE_PROGRESS, HEARTBEAT)

    #: Arguments of `work` added after request protocol 1 that only change how
    #: the result is shaped, never what is done: a worker that predates them
    #: either ignores them (protocol 1 and later, with a warning) or, older
    #: still, fails the call with ``TypeError: ... unexpected keyword argument``
    #: before doing anything, and the dispatcher then asks it again without
    #: them (`pieceworks.execution.dispatch`). Such an argument's default is
    #: what the older versions did.
    OPTIONAL_ARGUMENTS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def execute(self, **arguments: Any) -> dict[str, Any]:
        """`work` with the `arguments` it declares.

        An argument it does not declare is ignored with a logged warning (a
        newer conductor's); raise `IncompatibleRequest` naming those it
        needs and did not get (an older conductor's).
        """
        params = inspect.signature(self.work).parameters
        unknown = sorted(set(arguments) - set(params))
        if unknown:
            log.warning(
                "step %s: ignoring argument(s) %s, which this version of pieceworks does not"
                " know (a newer conductor's)",
                self.name,
                ", ".join(unknown),
            )
        lacking = sorted(
            n for n, p in params.items() if p.default is p.empty and n not in arguments
        )
        if lacking:
            raise IncompatibleRequest(
                f"step {self.name} lacks argument(s) {', '.join(lacking)}, which this version"
                " of pieceworks needs: the conductor is older"
            )
        return self.work(**{k: v for k, v in arguments.items() if k in params})

    def work(self, **arguments: Any) -> dict[str, Any]:
        """The step's work (subclasses declare their arguments)."""
        raise NotImplementedError

    @contextmanager
    def alive(self) -> Iterator[None]:
        """Emit `HEARTBEAT` now and every `HEARTBEAT_EVERY` seconds inside the block."""
        beats = {"n": 0}
        lock = threading.Lock()

        def beat() -> None:
            with lock:
                beats["n"] += 1
                n = beats["n"]
            self.notifier.notify(HEARTBEAT, {"beat": n})

        beat()
        beater = heartbeat(beat, HEARTBEAT_EVERY, f"step {self.name}")
        try:
            yield
        finally:
            beater.stop()

    def observed(self, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """`work()` inside `alive()`, its outcome told to the host's observer.

        An exception becomes `StepFailed` with the masked text when the host
        set a mask.
        """
        observer, mask = _observer, _mask
        with self.alive():
            try:
                out = work()
            except Exception as exc:
                if observer is not None:
                    observer(type(self).__name__, None, exc)
                if mask is None:
                    raise
                # The failure travels back in a message: only its masked text goes.
                raise StepFailed(mask(f"{type(exc).__name__}: {exc}")) from None
        if observer is not None:
            observer(type(self).__name__, out, None)
        return out


def run_data_step(
    owner: task.Task,
    step: type[RemoteStep],
    backend: str,
    arguments: Mapping[str, Any],
    local: Callable[[], T],
) -> T:
    """`step` on a worker of `backend` if `owner`'s dispatcher places it, else `local()`."""
    dispatcher = getattr(owner, "dispatcher", None)
    if dispatcher is not None:
        try:
            return dispatcher.run(step, owner.name, backend, arguments, owner)  # type: ignore[no-any-return]
        except NotPlaced:
            pass
    return local()
