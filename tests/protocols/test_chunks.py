"""The chunk-object encoding shared by the manager and offloading backends."""

from __future__ import annotations

import os

import pytest

from pieceworks.protocols import CorruptionError, InvalidName, UnsupportedCodec
from pieceworks.protocols.chunks import (
    CODECS,
    HEADER_BYTES,
    chunk_key,
    codec_of,
    decode_chunk,
    digest_of,
    encode_chunk,
    encode_framed,
    is_zero,
)

DATA = os.urandom(1000) + b"log line\n" * 5000


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_and_is_self_describing(codec: str) -> None:
    """A chunk encoded with any codec decodes without being told the codec."""
    stored = encode_chunk(DATA, codec)
    assert decode_chunk(stored, digest_of(DATA), len(DATA)) == DATA
    if codec != "none":
        assert len(stored) < len(DATA)


def test_a_flipped_byte_is_reported_with_the_offset() -> None:
    """Corruption anywhere in the object is caught and names the volume offset."""
    stored = bytearray(encode_chunk(DATA, "none"))
    stored[100] ^= 1
    with pytest.raises(CorruptionError, match="at offset 8192") as err:
        decode_chunk(bytes(stored), digest_of(DATA), len(DATA), offset=8192)
    assert err.value.offset == 8192


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_a_damaged_compressed_stream_is_corruption(codec: str) -> None:
    """A truncated compressed chunk is reported, never returned."""
    stored = encode_chunk(DATA, codec)[:-10]
    with pytest.raises(CorruptionError):
        decode_chunk(stored, digest_of(DATA), len(DATA), offset=0)


def test_a_bad_header_is_corruption() -> None:
    """An object that is not a pieceworks chunk is reported as corrupt."""
    with pytest.raises(CorruptionError, match="bad header"):
        decode_chunk(b"garbage", digest_of(DATA), len(DATA))


def test_unknown_codec_and_bad_digest_are_refused() -> None:
    """Typos in a codec name or a digest raise clear errors."""
    with pytest.raises(UnsupportedCodec, match="unknown codec 'lz5'"):
        encode_chunk(DATA, "lz5")
    with pytest.raises(InvalidName, match="invalid chunk digest"):
        chunk_key("../etc")
    digest = digest_of(DATA)
    assert chunk_key(digest) == f"chunks/{digest[:2]}/{digest}"


def test_zero_detection() -> None:
    """All-zero buffers of any size are holes; one non-zero byte is data."""
    assert is_zero(bytes(4 << 20)) and is_zero(bytes(9 << 20)) and is_zero(b"")
    buf = bytearray(9 << 20)
    buf[-1] = 1
    assert not is_zero(buf)


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_a_chunk_that_does_not_shrink_is_stored_uncompressed(codec: str) -> None:
    """Random bytes compress to more than they are: the object is plain, its header says so."""
    noise = os.urandom(64 * 1024)
    stored = encode_chunk(noise, codec)
    assert codec_of(stored) == "none" and len(stored) == len(noise) + 4
    assert decode_chunk(stored, digest_of(noise), len(noise)) == noise
    assert codec_of(encode_chunk(DATA, codec)) == codec  # compressible data keeps its codec


class _CountingCompressor:
    """A zstd compressor that records how many bytes each call was given."""

    def __init__(self) -> None:
        import zstandard  # noqa: PLC0415

        self.inner = zstandard.ZstdCompressor(level=1)
        self.calls: list[int] = []

    def compress(self, data: bytes | memoryview) -> bytes:
        self.calls.append(len(data))
        return self.inner.compress(data)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> _CountingCompressor:
    from pieceworks.protocols import chunks  # noqa: PLC0415

    compressor = _CountingCompressor()
    monkeypatch.setattr(chunks, "_compressor", lambda: compressor)
    return compressor


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_an_incompressible_chunk_is_stored_plain_without_compressing_it_whole(
    codec: str, counting: _CountingCompressor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random 4 MiB: only the probe's samples are compressed, the object is the plain bytes."""
    from pieceworks.protocols import chunks  # noqa: PLC0415

    zlib_calls: list[int] = []
    real_zlib = chunks._zlib_compress

    def zlib_compress(data: memoryview) -> bytes:
        zlib_calls.append(len(data))
        return real_zlib(data)

    monkeypatch.setattr(chunks, "_zlib_compress", zlib_compress)
    noise = os.urandom(4 << 20)
    stored = encode_chunk(noise, codec)
    assert codec_of(stored) == "none" and stored[4:] == noise
    assert counting.calls and max(counting.calls) <= chunks.PROBE_SAMPLE_BYTES
    assert sum(counting.calls) <= chunks.PROBE_SAMPLES * chunks.PROBE_SAMPLE_BYTES
    assert not zlib_calls


def test_a_chunk_with_one_compressible_sample_is_compressed_whole(
    counting: _CountingCompressor,
) -> None:
    """Random data with log text at the end: the last sample compresses, so the chunk is zstd."""
    size = 4 << 20
    text = b"2026-11-30 04:00:00 INFO backup of volume vol: chunk stored\n" * 4000
    chunk = os.urandom(size - len(text)) + text
    stored = encode_chunk(chunk, "zstd")
    assert codec_of(stored) == "zstd" and len(stored) < size
    assert counting.calls[-1] == size  # compressed whole after the probe
    assert decode_chunk(stored, digest_of(chunk), size) == chunk


def test_small_chunks_are_compressed_without_a_probe(counting: _CountingCompressor) -> None:
    """Below PROBE_MIN the chunk is compressed at once (a probe would cost as much)."""
    noise = os.urandom(64 * 1024)
    assert codec_of(encode_chunk(noise, "zstd")) == "none"
    assert counting.calls == [len(noise)]


def test_decode_chunk_view_does_not_copy_an_uncompressed_chunk() -> None:
    """Restore's decoder: a ``none`` chunk is a view of the stored object, checked as ever."""
    from pieceworks.protocols.chunks import decode_chunk_view  # noqa: PLC0415

    noise = os.urandom(1 << 20)
    stored = encode_chunk(noise, "zstd")
    assert codec_of(stored) == "none"
    plain = decode_chunk_view(stored, digest_of(noise), len(noise), 0)
    assert isinstance(plain, memoryview) and plain.obj is stored and plain == noise
    compressed = encode_chunk(DATA, "zstd")
    assert decode_chunk_view(compressed, digest_of(DATA), len(DATA)) == DATA
    damaged = stored[:-1] + bytes((stored[-1] ^ 1,))
    with pytest.raises(CorruptionError, match="at offset 8"):
        decode_chunk_view(damaged, digest_of(noise), len(noise), 8)
    with pytest.raises(CorruptionError, match="bad header"):
        decode_chunk_view(b"XXXX" + noise, digest_of(noise), len(noise), 8)


def _framed(plain: bytes) -> bytearray:
    return bytearray(HEADER_BYTES) + plain


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    "plain",
    [DATA, os.urandom(4 << 20), os.urandom(64 * 1024), b"", b"x"],
    ids=["mixed", "random-4MiB", "random-64KiB", "empty", "one-byte"],
)
def test_encode_framed_makes_the_same_object_as_encode_chunk(codec: str, plain: bytes) -> None:
    """Whatever the codec and data, the framed encoding is byte for byte `encode_chunk`'s."""
    assert bytes(encode_framed(_framed(plain), codec)) == encode_chunk(plain, codec)


def test_encode_framed_stores_an_incompressible_chunk_from_its_own_buffer() -> None:
    """Random 4 MiB: the object is the caller's buffer, header written in the room: no copy."""
    noise = os.urandom(4 << 20)
    framed = _framed(noise)
    stored = encode_framed(framed, "zstd")
    assert isinstance(stored, memoryview) and stored.obj is framed
    assert codec_of(stored) == "none" and stored[HEADER_BYTES:] == noise
    assert decode_chunk(bytes(stored), digest_of(noise), len(noise)) == noise
    compressed = encode_framed(_framed(DATA), "zstd")  # a new object: the buffer is free
    assert isinstance(compressed, bytes) and codec_of(compressed) == "zstd"


def test_encode_framed_refuses_a_buffer_without_writable_room() -> None:
    """No room in front, or a read-only buffer: ValueError, nothing encoded."""
    with pytest.raises(ValueError, match="4 writable bytes of room"):
        encode_framed(bytearray(2), "zstd")
    with pytest.raises(ValueError, match="writable bytes of room"):
        encode_framed(memoryview(bytes(_framed(DATA))), "zstd")
    with pytest.raises(UnsupportedCodec, match="unknown codec 'lz4'"):
        encode_framed(_framed(DATA), "lz4")
