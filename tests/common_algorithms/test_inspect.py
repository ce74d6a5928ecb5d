"""Store statistics, the store check and backup diffs (`common_algorithms.inspect`).

The diff is checked against the bytes themselves: hypothesis draws two
volumes made of blocks, and the ranges reported must be exactly the blocks
that differ (same chunk size) or cover every differing byte (different
chunk sizes). The check runs on real backups in a real POSIX store that a
test then damages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pieceworks.common_algorithms import Backend, BackupRequest, Store, backup
from pieceworks.common_algorithms.format.manifest import Manifest, read_manifest
from pieceworks.common_algorithms.inspect import (
    check_store,
    diff_manifests,
    parse_subset,
    store_stats,
)
from pieceworks.protocols import ChunkRef
from pieceworks.protocols.chunks import chunk_key, is_zero

BLOCK = 16


def _block(value: int | None) -> bytes:
    return bytes(BLOCK) if value is None else bytes([value + 1]) * BLOCK


def _manifest(backup_id: str, data: bytes, chunk: int) -> Manifest:
    chunks = []
    for off in range(0, len(data), chunk):
        piece = data[off : off + chunk]
        if not is_zero(piece):
            digest = hashlib.sha256(piece).hexdigest()
            chunks.append(ChunkRef(off, len(piece), digest, "none", len(piece) + 4))
    return Manifest(
        backup_id, "vol", "b", len(data), chunk, "none", tuple(chunks), 1.0, "direct-stream"
    )


volumes = st.lists(st.one_of(st.none(), st.integers(0, 3)), max_size=24)


def _differing_bytes(x: bytes, y: bytes) -> set[int]:
    n = max(len(x), len(y))
    return {i for i in range(n) if i >= len(x) or i >= len(y) or x[i] != y[i]}


def _covered(report_ranges: object) -> set[int]:
    return {i for r in report_ranges for i in range(r.offset, r.offset + r.length)}  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None)
@given(volumes, volumes)
def test_diff_with_one_chunk_size_is_exactly_the_differing_chunks(
    xs: list[int | None], ys: list[int | None]
) -> None:
    """Ranges = the chunks whose bytes differ (chunk = block here), kinds by size."""
    x = b"".join(map(_block, xs))
    y = b"".join(map(_block, ys))
    report = diff_manifests(_manifest("a", x, BLOCK), _manifest("b", y, BLOCK))
    assert report.exact
    assert _covered(report.ranges) == _differing_bytes(x, y)
    assert report.identical == (x == y)
    for r in report.ranges:
        assert r.kind == (
            "added" if r.offset >= len(x) else "removed" if r.offset >= len(y) else "changed"
        )
    pairs = zip(report.ranges, report.ranges[1:], strict=False)
    assert all(p.offset + p.length < q.offset or p.kind != q.kind for p, q in pairs)


@settings(max_examples=100, deadline=None)
@given(volumes, volumes)
def test_diff_with_different_chunk_sizes_covers_every_differing_byte(
    xs: list[int | None], ys: list[int | None]
) -> None:
    x = b"".join(map(_block, xs))
    y = b"".join(map(_block, ys))
    report = diff_manifests(_manifest("a", x, BLOCK), _manifest("b", y, 2 * BLOCK))
    assert not report.exact
    assert _covered(report.ranges) >= _differing_bytes(x, y)


def test_stats_count_shared_chunks_once_per_volume_and_once_in_the_store() -> None:
    a1 = _manifest("a1", _block(0) + _block(1), BLOCK)
    a2 = _manifest("a2", _block(0) + _block(2) + _block(None), BLOCK)
    b1 = _manifest("b1", _block(0), BLOCK)
    b1 = dataclasses.replace(b1, volume_id="other")
    figures = store_stats([a1, a2, b1])
    vol = figures.volumes["b", "vol"]
    assert (vol.backups, vol.bytes_logical, vol.bytes_data) == (2, 5 * BLOCK, 4 * BLOCK)
    assert (vol.chunks_referenced, vol.chunks_unique, vol.bytes_unique) == (4, 3, 3 * BLOCK)
    assert vol.bytes_stored == 3 * (BLOCK + 4)
    assert vol.dedup_ratio == round(4 / 3, 3)
    assert vol.compression_ratio == round(BLOCK / (BLOCK + 4), 3)
    assert figures.total.chunks_unique == 3 and figures.total.backups == 3
    assert figures.volumes["b", "other"].bytes_stored == BLOCK + 4
    doc = figures.to_dict()
    assert [(v["volume_id"], v["backend"]) for v in doc["volumes"]] == [
        ("other", "b"),
        ("vol", "b"),
    ]
    empty = store_stats([]).total
    assert empty.dedup_ratio == empty.compression_ratio == 1.0 and empty.first_created is None


@pytest.mark.parametrize("m", [1, 2, 7, 256])
def test_subsets_n_of_m_read_every_chunk_exactly_once(m: int) -> None:
    """restic's N/M: the buckets 1/M..M/M partition the chunks."""
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    chosen = [parse_subset(f"{n}/{m}").choose(digests) for n in range(1, m + 1)]
    assert sorted(d for c in chosen for d in c) == sorted(digests)
    pct = parse_subset("10%").choose(digests, random.Random(1))
    assert len(pct) == 30 and set(pct) <= set(digests)


@pytest.mark.parametrize("bad", ["0/3", "4/3", "1/257", "0%", "101%", "half", "1/0", ""])
def test_bad_subsets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid subset"):
        parse_subset(bad)


def _two_backups(file_backend: Backend, store: Store, volumes: Path) -> list[Manifest]:
    rng = random.Random(7)
    (volumes / "v").write_bytes(rng.randbytes(256 * 1024) + bytes(128 * 1024))
    first = backup(file_backend, store, BackupRequest("v", chunk_size=64 * 1024))
    with open(volumes / "v", "r+b") as f:
        f.write(rng.randbytes(1000))
    second = backup(file_backend, store, BackupRequest("v", chunk_size=64 * 1024, incremental=True))
    return [read_manifest(store.objects, b.backup_id) for b in (first, second)]


def test_check_finds_missing_resized_and_corrupt_chunks_and_unreadable_manifests(
    file_backend: Backend, store: Store, volumes: Path, tmp_path: Path
) -> None:
    """Every problem is reported with the backups concerned; a flipped byte needs a read."""
    first, second = _two_backups(file_backend, store, volumes)
    clean = check_store(store.objects, subset=parse_subset("100%"))
    assert clean.ok and clean.manifests == 2 and clean.chunks_referenced == 5
    assert clean.chunks_read == 5 and clean.bytes_read == 5 * 64 * 1024
    assert clean.objects_unreferenced == 0

    root = tmp_path / "store"
    shared = first.chunks[1].digest  # used by both backups
    only_first = first.chunks[0].digest
    (root / chunk_key(shared)).unlink()
    resized = root / chunk_key(second.chunks[0].digest)
    resized.write_bytes(resized.read_bytes() + b"x")
    flipped = root / chunk_key(only_first)
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0xFF
    flipped.write_bytes(bytes(data))
    (root / "chunks" / "ab").mkdir(parents=True, exist_ok=True)
    (root / "chunks" / "ab" / ("ab" * 32)).write_bytes(b"orphan")

    quick = check_store(store.objects)
    kinds = sorted(p.kind for p in quick.problems)
    assert kinds == ["chunk-missing", "chunk-size"]  # the flipped byte needs a read
    missing = next(p for p in quick.problems if p.kind == "chunk-missing")
    assert set(missing.backup_ids) == {first.backup_id, second.backup_id}
    assert quick.objects_unreferenced == 1 and quick.chunks_read == 0

    full = check_store(store.objects, subset=parse_subset("1/1"))
    corrupt = [p for p in full.problems if p.kind == "chunk-corrupt"]
    # The flipped byte is found; the chunk with a byte appended too when its
    # codec checks the length (a plain chunk), besides its wrong size.
    keys = {p.key: p for p in corrupt}
    assert chunk_key(only_first) in keys
    assert set(keys) <= {chunk_key(only_first), chunk_key(second.chunks[0].digest)}
    assert keys[chunk_key(only_first)].backup_ids == (first.backup_id,)
    assert not full.ok and full.to_dict()["chunks_corrupt"] == len(corrupt)
    assert full.to_dict()["chunks_wrong_size"] == 1 and full.to_dict()["chunks_missing"] == 1

    manifest = root / "manifests" / f"{second.backup_id}.json"
    manifest.write_bytes(manifest.read_bytes()[:-5])
    broken = check_store(store.objects)
    assert broken.manifests == 2 and broken.manifests_unreadable == 1
    assert any(p.kind == "manifest-unreadable" for p in broken.problems)


def test_check_reads_an_encrypted_store_with_its_keyed_chunk_ids(
    file_backend: Backend, volumes: Path, tmp_path: Path
) -> None:
    """Chunks named by a keyed id (not sha256) are read and checked as such."""
    from pieceworks.common_algorithms.keys import KdfParams, init_keys, unlock  # noqa: PLC0415
    from pieceworks.drivers.posix_store import PosixStore  # noqa: PLC0415
    from pieceworks.protocols import StoreSpec  # noqa: PLC0415
    from pieceworks.protocols.encrypted_store import EncryptedStore  # noqa: PLC0415

    raw = PosixStore(tmp_path / "vault")
    init_keys(raw, "correct horse", KdfParams(n=1 << 10))
    sealed = EncryptedStore(raw, unlock(raw, "correct horse"))
    store = Store("vault", sealed, StoreSpec("vault", "posix", {"path": str(tmp_path / "vault")}))
    _two_backups(file_backend, store, volumes)
    report = check_store(sealed, subset=parse_subset("100%"))
    assert report.ok and report.chunks_read == report.chunks_referenced == 5, report
