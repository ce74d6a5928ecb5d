"""Give the C heap's free pages back to the system after a large manifest is done with.

Why (issue 12, peak RSS of an incremental backup): glibc's malloc serves
a block of 128 KiB or more from its own ``mmap``, and when such a block
is freed it raises that threshold to the block's size (up to 32 MiB) and
its heap-trimming threshold to twice that. An incremental backup frees
its parent's manifest bytes (about 106 bytes a chunk: 28 MB at the 262,144
chunks of 1 TiB in 4 MiB chunks) right after reading it, so every column
it builds afterwards (its own chunk list, the table of known digests, the
persisted transfer result, the chunk list read back from it) comes from
the heap, and what is freed there is kept, not returned: measured with
``bench/rss_scale.py --incremental``, the incremental's peak grew by 319
bytes a chunk (205 with this), about 213 of them in use. `release_free_heap` asks glibc to return
the heap's free pages (``malloc_trim(0)``: a one-off call, no malloc
setting changed, nothing in use touched). Elsewhere (another C library,
or no ``malloc_trim``) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import Final

__all__ = ["LARGE_BYTES", "release_free_heap"]

log = logging.getLogger(__name__)

#: Below this, a manifest (or another object freed) is too small to matter: 1 MiB,
#: about 10,000 chunks, so that reading many small manifests does not trim each time.
LARGE_BYTES: Final = 1 << 20


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM: Final = _find_malloc_trim()


def release_free_heap(freed_bytes: int = LARGE_BYTES) -> bool:
    """Return the C heap's free pages to the system if `freed_bytes` is at least `LARGE_BYTES`.

    `freed_bytes` is about how much the caller has just freed (the size of a
    manifest's bytes); below `LARGE_BYTES` this does nothing. Returns whether
    glibc returned any memory (False where it cannot be asked).
    """
    if _MALLOC_TRIM is None or freed_bytes < LARGE_BYTES:
        return False
    return bool(_MALLOC_TRIM(0))
