"""Backup ids given short: what a `BackupNotFound` adds when an id is the start of others.

A restic user types the first characters of an id (``show 7dc11612``,
``bk-7dc1``); pieceworks takes ids whole (a prefix that matches one backup
today matches two tomorrow, and ``delete`` must never guess), so such an
id is not found (exit 3). The error then names what the given text is the
start of: the one backup, or how many and the first few, so that the
user can give the whole id. A text is the start of an id
if the id begins with it, or with ``bk-`` and it, ignoring case.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable

from pieceworks.common_algorithms.backend import Store
from pieceworks.common_algorithms.format.manifest import list_backup_ids
from pieceworks.protocols import BackupNotFound

__all__ = ["SHOWN", "given_backup_ids", "with_near_ids"]

log = logging.getLogger(__name__)

#: How many matching ids the message names.
SHOWN = 5

#: The argparse destinations that hold backup ids (``show``, ``delete``, ``diff``...).
_DESTS = ("backup_id", "backup_ids", "first", "second")


def given_backup_ids(args: argparse.Namespace) -> list[str]:
    """The backup ids of the command line, in order, each once."""
    found: list[str] = []
    for dest in _DESTS:
        value = getattr(args, dest, None)
        values = value if isinstance(value, list | tuple) else [value]
        found += [v for v in values if isinstance(v, str) and v]
    return list(dict.fromkeys(found))


def _starts(backup_id: str, text: str) -> bool:
    folded, short = backup_id.casefold(), text.casefold()
    return folded != short and (folded.startswith(short) or folded.startswith("bk-" + short))


def with_near_ids(
    exc: BackupNotFound, given: Iterable[str], stores: Iterable[Store]
) -> BackupNotFound | None:
    """`exc` with what each given id it names is the start of, or None if none is.

    `stores`: the stores the command opened (their manifests' names are
    listed, not read). A store that cannot be listed is left out: the
    original error stands.
    """
    message = str(exc)
    named = [g for g in given if g in message]
    if not named:
        return None
    ids: set[str] = set()
    for store in stores:
        try:
            ids.update(list_backup_ids(store.objects))
        except Exception:  # only a hint: the error that stopped the command stands
            log.debug("cannot list the backups of store %r", store.name, exc_info=True)
    notes = []
    for text in named:
        if text in ids:
            continue
        matches = sorted(i for i in ids if _starts(i, text))
        if len(matches) == 1:
            notes.append(f"{text!r} is the start of {matches[0]}: give the whole id")
        elif matches:
            shown = ", ".join(matches[:SHOWN]) + (", ..." if len(matches) > SHOWN else "")
            notes.append(
                f"{text!r} is the start of {len(matches)} backups ({shown}): give the whole id"
            )
    if not notes:
        return None
    return BackupNotFound(f"{message}; {'; '.join(notes)}")
