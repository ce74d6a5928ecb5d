"""The command line's id check: an argparse ``type=`` for every option that names an id.

Light on purpose (argparse and `pieceworks.protocols` only), so that the
parser and each command module that declares its own arguments can use it
without importing anything heavy.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pieceworks.protocols import InvalidName, validate_id

__all__ = ["id_type"]


def id_type(kind: str) -> Callable[[str], str]:
    """An argparse ``type=`` that accepts only a valid id (an empty or blank one is refused).

    `kind` names the value in the message (``"volume id"``); a refusal is
    a usage error (exit 2) before anything runs.
    """

    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{kind} must not be empty or blank")
        try:
            return validate_id(kind, text)
        except InvalidName as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = kind  # argparse names the type in its messages
    return check
