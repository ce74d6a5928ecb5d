"""Keep secrets from the configuration out of everything pieceworks prints.

What is masked, in every line of output, every log record, every error
message and every JSON string:

* the values of the configuration's secret options (a name such as
  ``key``, ``password``, ``secret_key``, ``token``: `is_secret_name`),
  wherever they appear;
* credentials inside URLs (``scheme://user:***@host``).

Nothing else: masking secrets, not words. A volume named ``secret: abc``,
a ``change_token`` field or an error that says ``password=...`` about
something pieceworks was never told is printed as it is (guessing from
words garbled such output and hid ordinary data). ``pieceworks config``
shows secret options by name as ``***`` (`Section.masked_options`).

Values shorter than `MIN_SECRET` characters are not replaced in free text
(replacing every occurrence of a two-letter string would garble it);
``pieceworks config`` still hides them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "MIN_SECRET", "Masker", "is_secret_name", "url_password"]

MASK = "***"
MIN_SECRET = 4

# Names (or name parts) of configuration options that hold secrets.
_SECRET_PARTS = (
    "key",
    "keyring",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "auth",
    "private",
)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)@")


def is_secret_name(name: str) -> bool:
    """Whether an option called `name` holds a secret (``key``, ``s3_secret``...).

    A name ending in ``_id`` names an identifier (``key_id``, ``backup_id``), never a secret.
    """
    low = name.lower()
    if low.endswith("_id"):
        return False
    parts = re.split(r"[_\-.]", low)
    return any(p in _SECRET_PARTS for p in parts) or any(
        s in low for s in ("password", "secret", "token", "passphrase")
    )


def url_password(value: str) -> str | None:
    """The password inside a URL such as ``postgresql://user:pw@host/db``, if any."""
    m = _URL_PASSWORD.search(value)
    return m.group("pw") if m else None


class Masker:
    """Masks secrets in text and in JSON-able data.

    Start it empty (patterns only) and `add` the secret values once the
    configuration is read.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also mask each of `secrets` wherever it appears."""
        known = set(self._secrets)
        known.update(s for s in secrets if len(s) >= MIN_SECRET)
        self._secrets = sorted(known, key=len, reverse=True)  # longest first

    def text(self, text: str) -> str:
        """`text` with every known secret and every password inside a URL masked."""
        return self.known(text)

    def known(self, text: str) -> str:
        """`text` with the known secrets and passwords inside URLs masked (nothing else)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)

    def data(self, value: Any) -> Any:
        """A copy of JSON-able `value` with the known secrets in its strings masked.

        Keys are data, not hints: a field called ``change_token`` is shown; a
        key is masked only where a known secret is in it. Numbers, booleans
        and None are never touched, so the document dumps as valid JSON
        whatever the secrets are (a passphrase ``false`` or ``2026``): mask
        the data, then dump it, never the dumped text.
        """
        if isinstance(value, Mapping):
            return {
                (self.known(k) if isinstance(k, str) else k): self.data(v) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.known(value)
        return value
