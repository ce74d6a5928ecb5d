"""A swift store that cannot connect says why in words, not ``[Errno 111]`` in urllib3's text."""

from __future__ import annotations

import pytest

from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import BackendError


def test_a_swift_store_that_cannot_connect_says_so_in_words() -> None:
    """It said ``ConnectionError: HTTPConnectionPool(host=..., port=1): Max retries exceeded
    ... [Errno 111] Connection refused``; the socket's reason is given instead."""
    with pytest.raises(BackendError) as caught:
        SwiftStore("http://127.0.0.1:1/auth/v1.0", "u", "k", "c", retries=0, timeout=5)
    message = str(caught.value)
    assert "Errno" not in message and "HTTPConnectionPool" not in message, message
    assert "ConnectionError: Connection refused" in message, message
