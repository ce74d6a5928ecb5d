"""Test volume contents: the realistic mix in small."""

from __future__ import annotations

import os


def mixed_data(blocks: int, block: int) -> bytes:
    """Blocks of random data, zeros, random and distinct log-like text, interleaved,
    plus a tail that is not block-aligned."""
    parts = []
    for i in range(blocks):
        kind = i % 4
        if kind in (0, 2):
            parts.append(os.urandom(block))
        elif kind == 1:
            parts.append(bytes(block))
        else:
            line = f"{i:08d} INFO volume service request handled ok\n".encode()
            parts.append((line * (block // len(line) + 1))[:block])
    return b"".join(parts) + b"tail-not-aligned"
