from typing import Final

NOTIFY: Final[str]
REQUEST: Final[str]
RESPONSE: Final[str]
REQUEST_TIMEOUT: Final[int]
NOTIFY_PERIOD: Final[int]
EXPIRES_AFTER: Final[int]
