"""Keep secrets from the configuration out of everything pieceworks prints.

Two layers, applied to every line of output, every log record and every
error message:

* known secret values (options whose name looks secret, ``key``,
  ``password``, ``secret``, ``token``..., and passwords inside URLs) are
  replaced wherever they appear, whatever the text around them;
* patterns catch secrets pieceworks was never told about: oslo.utils'
  `mask_password` (``password=...``, ``"token": "..."``...), passwords in
  URLs (``scheme://user:***@host``) and ``key = value`` style assignments.

Values shorter than `MIN_SECRET` characters are only masked by the patterns:
replacing every occurrence of a two-letter string would garble the output.

oslo.utils' ``strutils`` compiles several hundred regular expressions when
it is imported (about a quarter of a second): it is imported only for a text
that contains one of `ORACLE_STEMS`, the parts of every key oslo.utils looks
for (a test checks that they cover its whole list), so ``pieceworks list``
and ``--help`` print without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "MIN_SECRET", "ORACLE_STEMS", "Masker", "is_secret_name", "url_password"]

MASK = "***"
MIN_SECRET = 4

# Names (or name parts) of options that hold secrets, on top of oslo.utils' list.
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
_ASSIGNMENT = re.compile(
    r"(?P<head>\b(?:[A-Za-z0-9]+[_-])*(?:key|password|passwd|secret|token|credentials?)"
    r"\b['\"]?\s*[=:]\s*)(?P<q>['\"]?)(?P<value>[^\s'\",;}]+)(?P=q)",
    re.IGNORECASE,
)


#: One of these is part of every key oslo.utils' `mask_password` masks (lowercase):
#: a text containing none of them is returned by it unchanged.
ORACLE_STEMS = (
    "pass",
    "pswd",
    "secret",
    "token",
    "key",
    "kek",
    "configdrive",
    "fsid",
    "cookie",
    "credential",
    "suffix",
)


def _oslo_mask(text: str) -> str:
    """oslo.utils' `mask_password`, imported only when `text` may need it."""
    low = text.lower()
    if not any(stem in low for stem in ORACLE_STEMS):
        return text
    from oslo_utils import strutils  # noqa: PLC0415 (slow import, see the module docstring)

    return str(strutils.mask_password(text, secret=MASK))


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
        """`text` with every known secret and every secret-looking assignment masked.

        For human text and log lines. Not for serialised JSON, where oslo.utils'
        patterns can swallow a neighbouring value: use `data`, then `known`.
        """
        text = _oslo_mask(self.known(text))
        return _ASSIGNMENT.sub(lambda m: m.group("head") + m.group("q") + MASK + m.group("q"), text)

    def known(self, text: str) -> str:
        """`text` with the known secrets and passwords inside URLs masked (nothing else)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)

    def data(self, value: Any) -> Any:
        """A copy of JSON-able `value` with secret-named entries and secret text masked."""
        if isinstance(value, Mapping):
            return {
                k: (MASK if isinstance(k, str) and is_secret_name(k) else self.data(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.known(value)
        return value
