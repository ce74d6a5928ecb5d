"""What a manifest's fields may hold: `ValueError` naming the first thing wrong.

`pieceworks.common_algorithms.format.manifest_document.Manifest` checks
itself with these as it is built (and `check_labels` checks ``backup
--label`` before a backup starts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType

from pieceworks.protocols.chunk_list import ChunkList
from pieceworks.protocols.chunks import CODECS

__all__ = [
    "check_chunks",
    "check_enhancers",
    "check_labels",
    "check_stats",
    "enhancers_from",
    "finite",
    "is_int",
]

_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LABEL_VALUE_MAX = 256


def finite(number: float) -> bool:
    """Whether `number` is a finite float (an int too large for a float is not)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_chunks(chunks: ChunkList, size: int, chunk_size: int) -> None:
    """`ValueError` naming the first chunk out of order, out of size or of an unknown codec.

    Digests and the ints' types were checked as the `ChunkList` was built.
    """
    names = chunks.codec_names()
    unknown = {i for i, name in enumerate(names) if name not in CODECS}
    if unknown:
        for offset, index in zip(chunks.offsets(), chunks.codec_indexes(), strict=True):
            if index in unknown:
                raise ValueError(f"chunk at offset {offset} has an unknown codec {names[index]!r}")
    end = 0
    for offset, length in zip(chunks.offsets(), chunks.lengths(), strict=True):
        if offset < end:
            raise ValueError(f"chunk at offset {offset} overlaps or precedes the one before")
        if not 0 < length <= chunk_size:
            raise ValueError(
                f"chunk at offset {offset} has length {length}; expected 1..{chunk_size}"
            )
        end = offset + length
        if end > size:
            raise ValueError(f"chunk at offset {offset} ends beyond the volume size {size}")


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` as a dict if valid, else `ValueError` naming the bad label.

    A key is 1-64 letters, digits, ``.``, ``_`` or ``-`` starting with a
    letter or digit; a value is a string of at most 256 printable characters.
    """
    if not isinstance(labels, Mapping):
        raise ValueError(f"manifest labels must be a mapping, not {type(labels).__name__}")
    for k, v in labels.items():
        if not isinstance(k, str) or not _LABEL_KEY.fullmatch(k):
            raise ValueError(
                f"invalid label key {k!r}: use 1-64 letters, digits, '.', '_' or '-',"
                " starting with a letter or digit"
            )
        if not isinstance(v, str) or len(v) > _LABEL_VALUE_MAX or not v.isprintable():
            raise ValueError(
                f"invalid value for label {k!r}: use a string of at most"
                f" {_LABEL_VALUE_MAX} printable characters"
            )
    return dict(labels)


def enhancers_from(raw: object) -> dict[str, int]:
    """``{name: bytes_skipped}`` from the body's ``enhancers_used`` (`ValueError` if malformed)."""
    if not isinstance(raw, dict) or not all(
        isinstance(v, dict) and "bytes_skipped" in v for v in raw.values()
    ):
        raise ValueError(f"malformed enhancers_used {raw!r}")
    return {k: v["bytes_skipped"] for k, v in raw.items()}


def check_enhancers(used: Mapping[str, int]) -> Mapping[str, int]:
    if not isinstance(used, Mapping):
        raise ValueError(f"manifest enhancers_used must be a mapping, not {type(used).__name__}")
    for k, v in used.items():
        if not isinstance(k, str) or not k or not is_int(v) or v < 0:
            raise ValueError(
                f"manifest enhancers_used entry {k!r}: {v!r} is not a name and an int >= 0"
            )
    return MappingProxyType(dict(used))


def check_stats(stats: Mapping[str, int | str]) -> Mapping[str, int | str]:
    if not isinstance(stats, Mapping):
        raise ValueError(f"manifest stats must be a mapping, not {type(stats).__name__}")
    for k, v in stats.items():
        if not isinstance(k, str) or not isinstance(v, int | str) or isinstance(v, bool):
            raise ValueError(f"manifest stat {k!r}: {v!r} is not a str -> int or str entry")
    return MappingProxyType(dict(stats))
