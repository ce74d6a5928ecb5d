from typing import Any

class Entity:
    kind: str
    name: str
    metadata: dict[str, Any]
    def __init__(self, kind: str, name: str, metadata: dict[str, Any]) -> None: ...
    def to_dict(self) -> dict[str, Any]: ...
