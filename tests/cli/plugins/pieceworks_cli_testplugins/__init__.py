"""Third-party plugins for the CLI tests, found only through entry points.

The directory above holds a ``.dist-info`` declaring them, so a ``pieceworks``
process with it on ``PYTHONPATH`` discovers them exactly as it would an
installed package: an offloading driver (the test-support one), a driver
whose module does not exist, and `VaultStore`, a store that takes secrets
and is careless with them (logs them, puts them in its errors), so the tests
can check that the CLI masks them.
"""

from __future__ import annotations

import logging
import os

from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import ConfigError

__all__ = ["VaultStore"]

log = logging.getLogger("vault")


class VaultStore(PosixStore):
    """A POSIX store behind credentials it leaks into logs and errors."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: str,
        password: str = "",
        token: str = "",
        refuse: bool = False,
    ) -> None:
        log.info("vault: logging in with key %s, password %s, token %s", key, password, token)
        if refuse:
            raise ConfigError(f"vault refused the login: key {key} (token {token}) is not valid")
        super().__init__(path, durable=False)
