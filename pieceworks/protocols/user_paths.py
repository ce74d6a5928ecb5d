"""``~`` and ``~user`` in a path a user gave, expanded, or refused in words.

`pathlib.Path.expanduser` raises ``RuntimeError: Could not determine home
directory.`` for ``~nouser/x`` (a user this host does not know) or for ``~``
with neither ``HOME`` nor a password entry: the command line printed it as an
"unexpected RuntimeError" naming neither the path nor where it came from.
Standard library only.
"""

from __future__ import annotations

from pathlib import Path

from pieceworks.protocols.errors import ConfigError

__all__ = ["expand_user"]


def expand_user(value: str | Path, what: str) -> Path:
    """`value` with a leading ``~`` or ``~user`` expanded (else unchanged).

    `what` says where `value` comes from (``--config``, ``PIECEWORKS_HOME``,
    ``[stores.s] 'path'``). Raise `ConfigError` naming `what`, `value` and the
    unknown user (or the unknown home directory) when it cannot be expanded.
    """
    path = Path(value)
    try:
        return path.expanduser()
    except RuntimeError:
        pass
    head = str(value).split("/", 1)[0]
    user = head[1:]
    reason = f"there is no user {user!r} on this host" if user else "the home directory is unknown"
    raise ConfigError(f"{what} {value}: cannot expand {head!r}: {reason}")
