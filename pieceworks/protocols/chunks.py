"""The chunk-object contract shared by the manager and by offloading backends.

Every chunk of every backup is stored as one object named by the sha256 of
its plain bytes (`chunk_key`) and encoded by `encode_chunk`: a 4-byte header
(``PWC`` and a codec id) followed by the zstd frame, zlib stream or raw
bytes. Because the object says how it is encoded, chunks are shared by all
backups in a store whatever codec each backup asked for. A backend that
provides push-to-object-store writes exactly these objects.

Compressor objects are kept one per thread: sharing a zstandard compressor
between threads is unsafe. zstandard is imported by the first compressor or
decompressor (with ``platform``, which it imports, about 12 ms): a command
that reads only manifests never pays for it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Final

from pieceworks.protocols.errors import CorruptionError, InvalidName, UnsupportedCodec

if TYPE_CHECKING:
    import zstandard

__all__ = [
    "CODECS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CODEC",
    "HEADER_BYTES",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "chunk_key",
    "codec_of",
    "decode_chunk",
    "decode_chunk_view",
    "digest_of",
    "encode_chunk",
    "encode_framed",
    "is_zero",
]

CODECS: Final = ("zstd", "zlib", "none")
DEFAULT_CODEC: Final = "zstd"
#: The chunk size, in bytes, of a backup or copy that asks for none (4 MiB).
DEFAULT_CHUNK_SIZE: Final = 4 << 20
#: The chunk sizes, in bytes, a backup may use: 64 KiB to 64 MiB. The one range that
#: `BackupRequest`, the command line's ``--chunk-size`` and the remote target's push check.
MIN_CHUNK_SIZE: Final = 64 << 10
MAX_CHUNK_SIZE: Final = 64 << 20
ZSTD_LEVEL: Final = 1
ZLIB_LEVEL: Final = 6

#: The bytes of a stored chunk object's header: ``PWC`` and the codec id.
HEADER_BYTES: Final = 4

_MAGIC = b"PWC"
_IDS = {"none": 0, "zlib": 1, "zstd": 2}
_NAMES = {v: k for k, v in _IDS.items()}
_HEADERS = {name: _MAGIC + bytes((i,)) for name, i in _IDS.items()}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_local = threading.local()
_ZEROS = bytes(4 << 20)


def chunk_key(digest: str) -> str:
    """The object key of the chunk whose plain bytes hash to `digest`."""
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise InvalidName(f"invalid chunk digest {digest!r}: expected 64 lowercase hex digits")
    return f"chunks/{digest[:2]}/{digest}"


def digest_of(data: bytes | bytearray | memoryview) -> str:
    """Hex sha256 of `data` (releases the GIL for large inputs)."""
    return hashlib.sha256(data).hexdigest()


def is_zero(data: bytes | bytearray | memoryview) -> bool:
    """Whether every byte of `data` is zero (a hole costs no chunk).

    A memcmp against a block of zeros (``bytes.startswith`` takes any
    buffer), so it runs at memory speed for memoryviews too.
    """
    view = memoryview(data).cast("B")
    block = len(_ZEROS)
    return all(_ZEROS.startswith(view[i : i + block]) for i in range(0, len(view), block))


def codec_of(stored: bytes | bytearray | memoryview) -> str:
    """The codec a stored chunk object was encoded with (from its header)."""
    if len(stored) < HEADER_BYTES or bytes(stored[:3]) != _MAGIC or stored[3] not in _NAMES:
        raise CorruptionError("stored chunk has a bad header")
    return _NAMES[stored[3]]


def _zstandard() -> ModuleType:
    """The zstandard module, imported on first use (see the module docstring)."""
    import zstandard  # noqa: PLC0415

    return zstandard


def _compressor() -> zstandard.ZstdCompressor:
    c: zstandard.ZstdCompressor | None = getattr(_local, "zc", None)
    if c is None:
        c = _local.zc = _zstandard().ZstdCompressor(level=ZSTD_LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "zd", None)
    if d is None:
        d = _local.zd = _zstandard().ZstdDecompressor()
    return d


#: A chunk at least this long is probed before it is compressed (`_compresses`).
PROBE_MIN: Final = 256 << 10
#: How many evenly spaced samples of how many bytes the probe compresses.
PROBE_SAMPLES: Final = 8
PROBE_SAMPLE_BYTES: Final = 8 << 10
#: A sample compresses if zstd-1 makes it at most this fraction of its size.
PROBE_RATIO: Final = 0.95


def _compresses(view: memoryview) -> bool:
    """Whether any of `PROBE_SAMPLES` evenly spaced samples of `view` compresses.

    Random or already compressed data (half of a typical volume's chunks)
    does not: zstd would scan the whole chunk to find that out, which costs
    about half as much as hashing it. If no sample shrinks below
    `PROBE_RATIO` of its size, the chunk is stored uncompressed without
    compressing it. Compressible data shorter than the gap between samples
    (about 1/8 of the chunk) inside an otherwise incompressible chunk is then
    stored uncompressed too: the price of the shortcut, bounded by that share.
    """
    step = (len(view) - PROBE_SAMPLE_BYTES) // (PROBE_SAMPLES - 1)
    compressor = _compressor()
    limit = PROBE_SAMPLE_BYTES * PROBE_RATIO
    for i in range(PROBE_SAMPLES):
        start = i * step
        if len(compressor.compress(view[start : start + PROBE_SAMPLE_BYTES])) <= limit:
            return True
    return False


def _zlib_compress(data: memoryview) -> bytes:
    return zlib.compress(data, ZLIB_LEVEL)


def encode_chunk(plain: bytes | bytearray | memoryview, codec: str = DEFAULT_CODEC) -> bytes:
    """Encode `plain` as a stored chunk object compressed with `codec`.

    If the compressed form is not smaller than `plain` (random or already
    compressed data), the object is stored uncompressed and its header
    says ``none``: read the codec actually used with `codec_of`. A chunk of
    `PROBE_MIN` bytes or more whose samples do not compress (`_compresses`)
    is stored uncompressed without compressing it whole. The plain bytes
    are copied once (into the object), whatever the codec; `encode_framed`
    saves that copy for an uncompressed object.
    """
    view = memoryview(plain).cast("B")
    codec, body = _encode_body(view, codec)
    return b"".join((_HEADERS[codec], view if body is None else body))


def encode_framed(framed: bytearray | memoryview, codec: str = DEFAULT_CODEC) -> bytes | memoryview:
    """Encode the plain bytes that follow `HEADER_BYTES` of room in `framed`.

    The same object as ``encode_chunk(framed[HEADER_BYTES:], codec)``, but
    an object stored uncompressed (random or already compressed data, half
    of a typical volume's chunks) is `framed` itself, its header written
    into the room in front: no copy of the plain bytes, and no multi-MiB
    copy made while holding the GIL. Then the result is a view of `framed`:
    the caller must not reuse that buffer until the object is stored. A
    compressed object is new `bytes`. `framed` must be writable and at
    least `HEADER_BYTES` long (`ValueError` otherwise); `UnsupportedCodec`
    for an unknown codec.
    """
    room = memoryview(framed).cast("B")
    if room.readonly or len(room) < HEADER_BYTES:
        raise ValueError(f"a framed chunk needs {HEADER_BYTES} writable bytes of room in front")
    codec, body = _encode_body(room[HEADER_BYTES:], codec)
    if body is not None:
        return b"".join((_HEADERS[codec], body))
    room[:HEADER_BYTES] = _HEADERS["none"]
    return room


def _encode_body(view: memoryview, codec: str) -> tuple[str, bytes | None]:
    """The codec the object of `view` is stored with, and its compressed body (None: raw)."""
    if codec not in _IDS:
        raise UnsupportedCodec(f"unknown codec {codec!r}: choose one of {', '.join(CODECS)}")
    if codec == "none" or (len(view) >= PROBE_MIN and not _compresses(view)):
        return "none", None
    compress = _compressor().compress if codec == "zstd" else _zlib_compress
    body = compress(view)
    if len(body) >= len(view):
        return "none", None
    return codec, body


def decode_chunk(
    stored: bytes,
    digest: str,
    length: int,
    offset: int | None = None,
    chunk_id: Callable[[bytes], str] = digest_of,
) -> bytes:
    """Decode a stored chunk object and check it against `digest` and `length`.

    `chunk_id` names chunks in this store: the plain sha256 by default, the
    keyed id of an encrypted store (`pieceworks.protocols.encryption`).
    Raise `CorruptionError` (carrying `offset`, the chunk's place in the
    volume) if the header, the codec stream, the length or the id is wrong:
    corrupt data is never returned.
    """
    plain = _decompress(stored, digest, length, offset)
    if isinstance(plain, memoryview):
        plain = bytes(plain)
    _check(plain, digest, length, offset, chunk_id(plain))
    return plain


def decode_chunk_view(
    stored: bytes,
    digest: str,
    length: int,
    offset: int | None = None,
    chunk_id: Callable[[bytes | memoryview], str] = digest_of,
) -> bytes | memoryview:
    """`decode_chunk`, returning an uncompressed object's content as a view of `stored`.

    Saves copying a ``none`` chunk (random data: half of a typical volume)
    for a reader that only writes or hashes the result (restore). Same
    checks, same errors.
    """
    plain = _decompress(stored, digest, length, offset)
    _check(plain, digest, length, offset, chunk_id(plain))
    return plain


def _decompress(stored: bytes, digest: str, length: int, offset: int | None) -> bytes | memoryview:
    """The content of a stored chunk object (a view of `stored` if uncompressed), unchecked."""
    if len(stored) < HEADER_BYTES or stored[:3] != _MAGIC or stored[3] not in _NAMES:
        raise CorruptionError(f"chunk {digest}{_where(offset)}: bad header", offset)
    codec, body = _NAMES[stored[3]], memoryview(stored)[HEADER_BYTES:]
    try:
        if codec == "zstd":
            return _decompressor().decompress(body, max_output_size=length)
        if codec == "zlib":
            return zlib.decompress(body)
        return body
    except (_zstandard().ZstdError, zlib.error) as exc:
        raise CorruptionError(
            f"chunk {digest}{_where(offset)}: cannot decompress ({exc})", offset
        ) from exc


def _check(
    plain: bytes | memoryview, digest: str, length: int, offset: int | None, found: str
) -> None:
    if len(plain) != length or found != digest:
        raise CorruptionError(
            f"chunk {digest}{_where(offset)}: content does not match its hash", offset
        )


def _where(offset: int | None) -> str:
    return f" at offset {offset}" if offset is not None else ""
