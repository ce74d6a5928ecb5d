"""A configured backend: verified capabilities, typed access, its push codec."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pieceworks.common_algorithms import Backend
from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import Compress, ICompress, InvalidDriver, IStreamOut
from tests.support.drivers import OffloadFileDriver


class ZlibOnly(OffloadFileDriver):
    def compression_codecs(self) -> Sequence[str]:
        return ("zlib",)


class NoCodecs(OffloadFileDriver, Compress):
    def compression_codecs(self) -> Sequence[str]:
        return ()


def test_push_codec_is_what_the_backend_can_apply_itself(tmp_path: Path) -> None:
    """The wanted codec if possible, else the backend's best, else none."""
    assert Backend.of("f", FileDriver(tmp_path)).push_codec("zstd") == "none"
    both = Backend.of("o", OffloadFileDriver(tmp_path))
    assert both.push_codec("zlib") == "zlib" and both.push_codec("none") == "none"
    assert Backend.of("z", ZlibOnly(tmp_path)).push_codec("zstd") == "zlib"
    assert Backend.of("n", NoCodecs(tmp_path)).push_codec("zstd") == "none"


def test_use_gives_the_driver_as_a_capability_or_refuses(tmp_path: Path) -> None:
    """`use` returns the driver typed as the capability; a missing one is named."""
    backend = Backend.of("lab", FileDriver(tmp_path))
    assert backend.use(IStreamOut) is backend.driver
    with pytest.raises(InvalidDriver, match="backend 'lab' does not provide compress"):
        backend.use(ICompress)
