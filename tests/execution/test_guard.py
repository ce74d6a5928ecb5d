"""`GuardedPersistence.check`: why a claim counts as lost, in its message.

A conductor that could not reach the jobboard to check its claim stops as
if it had lost it, which is right (it cannot tell), but it said "another
conductor owns it", sending an operator after a rival conductor that did
not exist while the board was down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from pieceworks.execution.guard import ClaimLost, GuardedPersistence


def _guard(still_owner: Callable[[], bool]) -> GuardedPersistence:
    inner: Any = None  # never reached: check() asks still_owner only
    return GuardedPersistence(inner, still_owner, what="job j1 (backup-bk-1)")


def test_a_board_out_of_reach_is_not_reported_as_another_owner() -> None:
    def unreachable() -> bool:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    guard = _guard(unreachable)
    with pytest.raises(ClaimLost) as lost:
        guard.check()
    assert "could not confirm" in str(lost.value), lost.value
    assert "Connection refused" in str(lost.value)
    assert "another conductor owns it" not in str(lost.value)
    assert guard.lost


def test_a_claim_that_is_not_ours_any_more_says_so_and_stays_lost() -> None:
    answers = iter([False, True])
    guard = _guard(lambda: next(answers))
    for _ in range(2):  # once lost, lost: the board is not asked again
        with pytest.raises(ClaimLost, match="no longer this conductor's"):
            guard.check()


def test_a_held_claim_passes() -> None:
    _guard(lambda: True).check()


def test_a_board_out_of_reach_for_a_moment_is_asked_again_and_the_write_goes_on() -> None:
    """Within `patience` seconds, the board's own answer decides: a blip is not a lost claim."""
    answers: list[Any] = [ConnectionError("reset by peer"), ConnectionError("refused"), True]

    def flaky() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    inner: Any = None
    guard = GuardedPersistence(inner, flaky, what="job j1 (backup-bk-1)", patience=5.0)
    guard.check()
    assert not guard.lost and not answers


def test_a_board_out_of_reach_past_the_patience_loses_the_claim() -> None:
    def unreachable() -> bool:
        raise ConnectionError("refused")

    inner: Any = None
    guard = GuardedPersistence(inner, unreachable, what="job j1 (backup-bk-1)", patience=1.2)
    started = time.monotonic()
    with pytest.raises(ClaimLost, match="could not confirm"):
        guard.check()
    assert 0.9 <= time.monotonic() - started < 3
