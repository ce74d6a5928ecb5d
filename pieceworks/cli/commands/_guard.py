"""``backup --guard-sample PCT``: the sampling guard's share, declared beside the command.

Light at import (argparse only), so that ``--help`` stays free of TaskFlow.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["add_arguments", "guard_percent"]


def guard_percent(text: str) -> float:
    """``PCT`` or ``PCT%`` as a float in [0, 100]; `argparse.ArgumentTypeError` otherwise."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 100.0:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"invalid percentage {text!r}: give a number from 0 (guard off) to 100"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The guard's option of ``backup``."""
    parser.add_argument(
        "--guard-sample",
        dest="guard_sample",
        metavar="PCT",
        type=guard_percent,
        default=None,
        help=(
            "re-read this percent (at least one chunk) of the chunks changed-blocks reports"
            " unchanged and allocated-extents reports as holes, to catch a lying driver;"
            " 0 turns the guard off (default: [backup] guard_sample, else 1)"
        ),
    )
