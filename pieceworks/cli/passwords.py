"""Where a passphrase comes from: the environment, a file, or a prompt on a terminal.

Looked up in this order, as restic does: ``--password-file FILE`` (where a
command takes it), ``$PIECEWORKS_PASSWORD``, ``$PIECEWORKS_PASSWORD_FILE``,
the store section's ``password_file``, then a prompt when standard input is a
terminal. A passphrase is never
echoed, logged or put in JSON: every one read is added to the output's
masker, so even an error message that quoted it would show ``***``.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Mapping

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.output import Output
from pieceworks.common_algorithms.keys import passphrase_from_file

__all__ = [
    "FROM_PASSWORD_ENV",
    "FROM_PASSWORD_FILE_ENV",
    "PASSWORD_ENV",
    "PASSWORD_FILE_ENV",
    "read_new_password",
    "read_password",
]

PASSWORD_ENV = "PIECEWORKS_PASSWORD"
PASSWORD_FILE_ENV = "PIECEWORKS_PASSWORD_FILE"
#: The source store's passphrase for `pieceworks copy` (as restic's RESTIC_FROM_PASSWORD).
FROM_PASSWORD_ENV = "PIECEWORKS_FROM_PASSWORD"
FROM_PASSWORD_FILE_ENV = "PIECEWORKS_FROM_PASSWORD_FILE"
NEW_PASSWORD_ENV = "PIECEWORKS_NEW_PASSWORD"
NEW_PASSWORD_FILE_ENV = "PIECEWORKS_NEW_PASSWORD_FILE"


def _from_file(path: str, what: str) -> str:
    return passphrase_from_file(path, what)


def _lookup(
    env: Mapping[str, str], file: str | None, var: str, file_var: str, what: str
) -> str | None:
    if file:
        return _from_file(file, what)
    if env.get(var):
        return env[var]
    if env.get(file_var):
        return _from_file(env[file_var], what)
    return None


def read_password(
    out: Output,
    env: Mapping[str, str],
    store: str,
    file: str | None = None,
    *,
    source: bool = False,
    configured: str | None = None,
    initial: bool = False,
) -> str:
    """The passphrase of encrypted store `store`; a usage error (exit 2) if none is given.

    No passphrase is a missing input, not a fault of the configuration: a
    `CliError` with code `ExitCode.USAGE` (reference ``usage-error``).

    `source`: the store copied from (``copy``), whose passphrase comes from
    ``--from-password-file`` and ``$PIECEWORKS_FROM_PASSWORD[_FILE]``.
    `configured` is the store section's ``password_file``, read when
    neither the option nor the environment gives one (before a prompt).
    `initial`: the passphrase that is to encrypt the store (``key init``).
    """
    var, file_var, option = (
        (FROM_PASSWORD_ENV, FROM_PASSWORD_FILE_ENV, "--from-password-file")
        if source
        else (PASSWORD_ENV, PASSWORD_FILE_ENV, "--password-file")
    )
    password = _lookup(env, file, var, file_var, "passphrase")
    if password is None and configured:
        password = _from_file(configured, "passphrase")
    if password is None and sys.stdin.isatty():
        password = getpass.getpass(f"passphrase of store '{store}': ")
    if not password:
        state = "is to be encrypted" if initial else "is encrypted"
        raise CliError(
            f"store '{store}' {state}: give its passphrase with ${var},"
            f" ${file_var}, {option} or password_file in its section (or type it on a terminal)",
            ExitCode.USAGE,
        )
    out.masker.add(frozenset({password}))
    return password


def read_new_password(
    out: Output, env: Mapping[str, str], store: str, file: str | None = None
) -> str:
    """A new passphrase for `store`: ``--new-password-file``, the environment, or typed twice.

    None given, or two typed that differ: a usage error (`CliError`, exit 2).
    """
    password = _lookup(env, file, NEW_PASSWORD_ENV, NEW_PASSWORD_FILE_ENV, "new passphrase")
    if password is None and sys.stdin.isatty():
        password = getpass.getpass(f"new passphrase of store '{store}': ")
        if getpass.getpass("repeat it: ") != password:
            raise CliError("the two passphrases differ; nothing was changed", ExitCode.USAGE)
    if not password:
        raise CliError(
            f"a new passphrase for store '{store}' is needed: give it with ${NEW_PASSWORD_ENV},"
            f" ${NEW_PASSWORD_FILE_ENV} or --new-password-file (or type it on a terminal)",
            ExitCode.USAGE,
        )
    out.masker.add(frozenset({password}))
    return password
