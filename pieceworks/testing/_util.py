"""Small helpers the checks share: test bytes, expecting an error, naming differences."""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import suppress

from pieceworks.testing.scratch import CheckFailed

__all__ = ["differences", "expect_error", "filled", "mixed", "same"]


def filled(n: int, seed: int) -> bytes:
    """`n` pseudo-random bytes with no zero byte (so every byte is data)."""
    return random.Random(seed).randbytes(n).replace(b"\0", b"\x01")


def mixed(size: int, seed: int, block: int = 16 << 10) -> bytes:
    """`size` bytes: blocks of data and of zeros, alternating, data first."""
    out = bytearray(size)
    rng = random.Random(seed)
    for offset in range(0, size, 2 * block):
        n = min(block, size - offset)
        out[offset : offset + n] = rng.randbytes(n).replace(b"\0", b"\x01")
    return bytes(out)


def differences(got: bytes, want: bytes, limit: int = 8) -> str:
    """The first differing byte ranges of `got` and `want`, as text."""
    if len(got) != len(want):
        return f"{len(got)} bytes instead of {len(want)}"
    ranges: list[str] = []
    i, n = 0, len(want)
    step = 4096
    while i < n and len(ranges) < limit:
        if got[i : i + step] == want[i : i + step]:
            i += step
            continue
        start = i
        while i < n and got[i] != want[i]:
            i += 1
        if i == start:
            i += 1
            continue
        ranges.append(f"{start}..{i}")
    return "bytes differ at offsets " + ", ".join(ranges)


def same(got: bytes, want: bytes, what: str) -> None:
    """Raise `CheckFailed` naming where `got` and `want` differ."""
    if got != want:
        raise CheckFailed(f"{what}: {differences(got, want)}")


def expect_error(error: type[BaseException], call: Callable[[], object], what: str) -> None:
    """`call()` raises `error` (a subclass counts); else `CheckFailed` naming what it did."""
    try:
        result = call()
    except error:
        return
    except Exception as exc:
        raise CheckFailed(
            f"{what}: raised {type(exc).__name__} ({exc}), not {error.__name__}"
        ) from exc
    close = getattr(result, "close", None)
    if callable(close):
        with suppress(Exception):
            close()
    raise CheckFailed(f"{what}: returned {result!r} instead of raising {error.__name__}")
