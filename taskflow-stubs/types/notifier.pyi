from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, Self, overload

_Details = dict[str, Any]
_DetailsFilter = Callable[[_Details], object]

class _Callback(Protocol):
    def __call__(self, event_type: str, /, *, details: _Details) -> object: ...

class Notifier:
    RESERVED_KEYS: ClassVar[tuple[str, ...]]
    ANY: ClassVar[str]
    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def is_registered(
        self,
        event_type: str,
        callback: Callable[..., object],
        details_filter: _DetailsFilter | None = None,
    ) -> bool: ...
    def reset(self) -> None: ...
    def notify(self, event_type: str, details: _Details | None) -> None: ...
    # Callbacks are invoked as callback(event_type, *args, details=..., **kwargs).
    @overload
    def register(
        self,
        event_type: str,
        callback: _Callback,
        args: None = None,
        kwargs: None = None,
        details_filter: _DetailsFilter | None = None,
    ) -> None: ...
    @overload
    def register(
        self,
        event_type: str,
        callback: Callable[..., object],
        args: Sequence[object],
        kwargs: Mapping[str, object] | None = None,
        details_filter: _DetailsFilter | None = None,
    ) -> None: ...
    @overload
    def register(
        self,
        event_type: str,
        callback: Callable[..., object],
        args: None = None,
        *,
        kwargs: Mapping[str, object],
        details_filter: _DetailsFilter | None = None,
    ) -> None: ...
    def deregister(
        self,
        event_type: str,
        callback: Callable[..., object],
        details_filter: _DetailsFilter | None = None,
    ) -> bool: ...
    def deregister_event(self, event_type: str) -> int: ...
    def copy(self) -> Self: ...
    def can_be_registered(self, event_type: str) -> bool: ...
    def can_trigger_notification(self, event_type: str) -> bool: ...

class RestrictedNotifier(Notifier):
    def __init__(self, watchable_events: Iterable[str], allow_any: bool = True) -> None: ...
    def events_iter(self) -> Iterator[str]: ...
