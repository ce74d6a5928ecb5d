"""A stream copy refuses a source that shrinks mid-copy instead of filling zeros."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

import pytest

from pieceworks.common_algorithms.format.stream_copy import copy_stream
from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import ShortRead, VolumeRef

CS = 64 * 1024


def _volume(root: Path, volume_id: str, chunks: int) -> Path:
    FileDriver(root).write_volume(VolumeRef(volume_id), os.urandom(chunks * CS))
    return root / volume_id


def test_a_source_truncated_mid_copy_is_a_short_read(tmp_path: Path) -> None:
    """The file shrinks after the first chunk: ShortRead names the short read."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    path = _volume(a, "v", 16)
    source, target = FileDriver(a), FileDriver(b)

    def shrink(done: int, total: int) -> None:
        if done == CS:  # after the first chunk is read: the source loses its tail
            os.truncate(path, 2 * CS + 10)

    with closing(source.open_read(VolumeRef("v"))) as reader:
        writer = target.open_write(VolumeRef("w"), reader.size)
        with pytest.raises(ShortRead) as err:
            copy_stream(reader, writer, chunk_size=CS, progress=shrink)
        writer.abort()
    assert str(err.value) == (
        f"short read at offset {2 * CS}: got 10 of {CS} bytes; the source is shorter than"
        f" its reported size {16 * CS}"
    )
    assert os.listdir(b) == [".incoming"] and os.listdir(b / ".incoming") == []


def test_a_source_emptied_before_the_copy_reads_nothing_as_zeros(tmp_path: Path) -> None:
    """Truncated to zero after opening: the first read already fails (no all-zero copy)."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    path = _volume(a, "v", 3)
    with closing(FileDriver(a).open_read(VolumeRef("v"))) as reader:
        os.truncate(path, 0)
        writer = FileDriver(b).open_write(VolumeRef("w"), reader.size)
        with pytest.raises(ShortRead, match=f"short read at offset 0: got 0 of {CS} bytes"):
            copy_stream(reader, writer, chunk_size=CS)
        writer.abort()
