"""The sampling guard catches lying enhancers; honest drivers pay a small, reported cost.

Drivers: `TrackingFileDriver` (the file driver plus a real change journal)
and its liars from tests/support/liars.py, one lie each: changed-blocks that
omits the last changed extent, allocated-extents that omits the last data
extent. Every backup is restored and compared byte for byte.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    restore,
)
from pieceworks.common_algorithms.format.manifest import Manifest, read_manifest
from pieceworks.common_algorithms.operations.guard import (
    DEFAULT_GUARD_MAX_CHUNKS,
    GuardPlan,
    GuardReport,
    chunk_bytes,
    enhancer_savings,
    guard_stats,
    plan_guard,
)
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import ChunkRef, ConfigError, Extent, StoreSpec, VolumeRef
from tests.support.liars import OmitsLastChangedBlock, OmitsLastExtent
from tests.support.tracking import TrackingFileDriver

CHUNK = 64 * 1024


def make(tmp_path: Path, cls: type[TrackingFileDriver]) -> tuple[Backend, TrackingFileDriver]:
    path = tmp_path / "volumes"
    path.mkdir(exist_ok=True)
    driver = cls(path)
    return Backend.of("lab", driver), driver


def make_store(tmp_path: Path) -> Store:
    path = tmp_path / "store"
    return Store("s", PosixStore(path), StoreSpec("s", "posix", {"path": str(path)}))


def sparse_volume(
    driver: TrackingFileDriver, volume_id: str, size: int, data: dict[int, bytes]
) -> None:
    """A volume of `size` bytes holding `data` at its offsets and holes elsewhere."""
    writer = driver.open_write(VolumeRef(volume_id), size)
    for offset, chunk in sorted(data.items()):
        writer.write_at(offset, chunk)
    writer.commit()


def restored(backend: Backend, store: Store, backup_id: str, driver: TrackingFileDriver) -> bytes:
    target = f"back-{backup_id}"
    restore(backend, store, RestoreRequest(backup_id, target))
    fd, size = driver._open_source(VolumeRef(target))
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def request(**kw: object) -> BackupRequest:
    return BackupRequest("vol", incremental=True, chunk_size=CHUNK, **kw)  # type: ignore[arg-type]


# -- lying changed-blocks ------------------------------------------------------


def test_a_changed_block_left_out_is_caught_and_backed_up_by_a_full_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes to chunks 3 and 9; the driver reports chunk 3 only: the guard names chunk 9."""
    backend, driver = make(tmp_path, OmitsLastChangedBlock)
    store = make_store(tmp_path)
    data = bytearray(os.urandom(CHUNK * 12))
    sparse_volume(driver, "vol", len(data), {0: bytes(data)})
    backup(backend, store, request())
    for offset in (3 * CHUNK + 5, 9 * CHUNK + 100):
        change = os.urandom(64)
        driver.write_in_place("vol", offset, change)
        data[offset : offset + 64] = change
    with caplog.at_level(logging.WARNING, logger="pieceworks.common_algorithms.operations.guard"):
        out = backup(backend, store, request(guard_percent=100))
    assert out.guard is not None
    [lie] = out.guard.lies
    assert (lie.enhancer, lie.backend, lie.offsets) == ("changed-blocks", "lab", (9 * CHUNK,))
    assert lie.driver == "tests.support.liars.OmitsLastChangedBlock"
    assert f"byte offsets {9 * CHUNK}" in caplog.text
    assert "OmitsLastChangedBlock" in caplog.text
    assert out.warnings == (lie.message(),)
    # the full read: every chunk read again after the guarded pass, no enhancer credited
    assert out.enhancers_used == {}
    assert out.bytes_read >= len(data)
    assert restored(backend, store, out.backup_id, driver) == data
    manifest = read_manifest(store.objects, out.backup_id)
    assert manifest.enhancers_used == {}
    assert '"offsets":[589824]' in str(manifest.stats["guard_lies"])
    doc = out.to_dict()
    assert doc["guard"]["lies"][0]["offsets"] == [9 * CHUNK]
    assert doc["warnings"] == [lie.message()]


def test_the_default_sample_reads_at_least_one_chunk(tmp_path: Path) -> None:
    """At the default 1%, a one-chunk volume whose only change is left out is still caught."""
    backend, driver = make(tmp_path, OmitsLastChangedBlock)
    store = make_store(tmp_path)
    data = bytearray(os.urandom(CHUNK))
    sparse_volume(driver, "vol", len(data), {0: bytes(data)})
    backup(backend, store, request())
    driver.write_in_place("vol", 100, b"changed")
    data[100:107] = b"changed"
    out = backup(backend, store, request())
    assert out.guard is not None and out.guard.percent == 1.0
    assert [lie.offsets for lie in out.guard.lies] == [(0,)]
    assert restored(backend, store, out.backup_id, driver) == data


def test_without_the_guard_the_lie_reaches_the_backup(tmp_path: Path) -> None:
    """--guard-sample 0: the left-out change is silently missing (why the guard is on)."""
    backend, driver = make(tmp_path, OmitsLastChangedBlock)
    store = make_store(tmp_path)
    data = bytearray(os.urandom(CHUNK * 2))
    sparse_volume(driver, "vol", len(data), {0: bytes(data)})
    backup(backend, store, request())
    driver.write_in_place("vol", CHUNK + 1, b"lost")
    out = backup(backend, store, request(guard_percent=0))
    assert out.guard is not None and out.guard.chunks_checked == 0 and not out.guard.lies
    assert restored(backend, store, out.backup_id, driver) == data  # the old bytes: wrong


# -- lying allocated-extents ---------------------------------------------------------


def test_a_data_extent_left_out_is_caught_and_backed_up_by_a_full_read(tmp_path: Path) -> None:
    """Data at chunks 0 and 5 of 8, the driver leaves out chunk 5: the guard names it."""
    backend, driver = make(tmp_path, OmitsLastExtent)
    store = make_store(tmp_path)
    size = 8 * CHUNK
    first, last = os.urandom(CHUNK), os.urandom(CHUNK)
    sparse_volume(driver, "vol", size, {0: first, 5 * CHUNK: last})
    out = backup(backend, store, BackupRequest("vol", chunk_size=CHUNK, guard_percent=100))
    assert out.guard is not None
    [lie] = out.guard.lies
    assert (lie.enhancer, lie.offsets) == ("allocated-extents", (5 * CHUNK,))
    expected = first + bytes(4 * CHUNK) + last + bytes(2 * CHUNK)
    assert restored(backend, store, out.backup_id, driver) == expected


def test_extents_that_omit_everything_are_caught_at_the_default_sample(tmp_path: Path) -> None:
    """A volume that is one data extent: the liar reports none, any sampled hole has data."""
    backend, driver = make(tmp_path, OmitsLastExtent)
    store = make_store(tmp_path)
    data = os.urandom(CHUNK * 30)
    sparse_volume(driver, "vol", len(data), {0: data})
    out = backup(backend, store, BackupRequest("vol", chunk_size=CHUNK))
    assert out.guard is not None and out.guard.chunks_checked == 1
    assert [lie.enhancer for lie in out.guard.lies] == ["allocated-extents"]
    assert restored(backend, store, out.backup_id, driver) == data


# -- honest drivers --------------------------------------------------------------------


def test_an_honest_driver_gets_no_warning_and_a_small_reported_cost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """200 chunks, one changed: 2 chunks re-read (1% of 199), each enhancer's skip reported."""
    backend, driver = make(tmp_path, TrackingFileDriver)
    store = make_store(tmp_path)
    data = bytearray(os.urandom(CHUNK * 200))
    size = 220 * CHUNK  # 20 chunks of holes at the end
    sparse_volume(driver, "vol", size, {0: bytes(data)})
    full = backup(backend, store, request())
    assert full.enhancers_used == {"allocated-extents": 19 * CHUNK}  # 1 hole sampled
    assert full.guard is not None and full.guard.chunks_checked == 1  # 1% of 20 holes
    driver.write_in_place("vol", 7 * CHUNK, b"x" * 10)
    data[7 * CHUNK : 7 * CHUNK + 10] = b"x" * 10
    with caplog.at_level(logging.WARNING):
        out = backup(backend, store, request())
    assert "lied" not in caplog.text
    assert out.warnings == ()
    guard = out.guard
    assert guard is not None and not guard.lies
    assert guard.chunks_checked == 2 + 1  # ceil(1% of 199 unchanged) + 1 of 20 holes
    assert guard.bytes_reread == 3 * CHUNK
    assert out.bytes_read == CHUNK + guard.bytes_reread
    # what each enhancer let it skip, and they add up with what it read
    skipped = out.enhancers_used
    assert skipped["allocated-extents"] == 19 * CHUNK  # one hole chunk was sampled
    assert skipped["changed-blocks"] == 197 * CHUNK  # 200 less 1 changed, 2 sampled
    assert sum(skipped.values()) + out.bytes_read == size
    assert out.to_dict()["enhancers_used"] == {
        "allocated-extents": {"bytes_skipped": 19 * CHUNK},
        "changed-blocks": {"bytes_skipped": 197 * CHUNK},
    }
    manifest = read_manifest(store.objects, out.backup_id)
    assert dict(manifest.enhancers_used) == skipped
    assert manifest.stats["guard_bytes_reread"] == 3 * CHUNK
    assert "guard_lies" not in manifest.stats
    assert restored(backend, store, out.backup_id, driver) == bytes(data) + bytes(20 * CHUNK)


def test_guard_percent_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="guard sample 101"):
        BackupRequest("vol", guard_percent=101)
    with pytest.raises(ConfigError, match="guard sample"):
        BackupRequest("vol", guard_percent=float("nan"))


# -- the plan itself ---------------------------------------------------------------------


def ref(offset: int) -> ChunkRef:
    return ChunkRef(offset, CHUNK, f"{offset:064x}", "none", CHUNK)


def test_the_sample_is_drawn_from_the_skipped_chunks_only() -> None:
    """Holes come from outside the extents, unchanged chunks from inside but not changed."""
    size = 100 * CHUNK
    extents = [Extent(0, 50 * CHUNK)]
    changed = [Extent(10 * CHUNK, 5)]
    parent = {i * CHUNK: ref(i * CHUNK) for i in range(50)}
    for seed in range(20):
        plan = plan_guard(
            size,
            CHUNK,
            extents=extents,
            changed=changed,
            parent=parent,
            percent=10,
            rng=random.Random(seed),
        )
        assert len(plan.holes) == 5 and all(50 <= i < 100 for i in plan.holes)
        assert len(plan.unchanged) == 5
        assert all(i < 50 and i != 10 for i in plan.unchanged)
        assert plan.unchanged == {i: parent[i * CHUNK] for i in plan.unchanged}
        assert plan.bytes_sampled == 10 * CHUNK


def test_savings_add_up_with_a_short_last_chunk() -> None:
    size = 10 * CHUNK + 7
    plan = GuardPlan(size, CHUNK, 0.0, [Extent(9 * CHUNK, CHUNK + 7)], [], (), {})
    assert chunk_bytes(plan.extents, size, CHUNK) == CHUNK + 7
    assert enhancer_savings(plan, 0) == {
        "allocated-extents": 9 * CHUNK,
        "changed-blocks": CHUNK + 7,
    }


def test_a_manifest_without_enhancers_used_is_written_as_before() -> None:
    """No enhancer, no new field: the body is what earlier versions wrote."""
    m = Manifest("bk-1", "vol", "lab", 0, CHUNK, "zstd", (), 1.0, "direct-stream")
    assert b"enhancers_used" not in m.to_json()
    with_used = Manifest(
        "bk-1",
        "vol",
        "lab",
        0,
        CHUNK,
        "zstd",
        (),
        1.0,
        "direct-stream",
        enhancers_used={"changed-blocks": 5},
    )
    back = Manifest.from_json(with_used.to_json())
    assert dict(back.enhancers_used) == {"changed-blocks": 5}


# -- the cap -----------------------------------------------------------------------------


def test_the_default_cap_bounds_the_sample_of_a_huge_thin_volume() -> None:
    """1 TiB of 4 MiB chunks, one data chunk: 1% would be 2622 holes (~10 GiB); 128 are drawn."""
    chunk = 4 * 1024 * 1024
    size = 1024**4
    plan = plan_guard(size, chunk, extents=[Extent(0, chunk)], changed=None, parent=None, percent=1)
    assert len(plan.holes) == DEFAULT_GUARD_MAX_CHUNKS == 128
    assert len(set(plan.holes)) == 128 and all(0 < i < size // chunk for i in plan.holes)
    assert plan.bytes_sampled == 128 * chunk  # 512 MiB, not ~10 GiB
    report = plan.check([ref(0)], "lab", "x.Driver")
    assert report.capped and report.chunks_wanted == 2622 and report.max_chunks == 128
    assert report.to_dict() == {
        "sample_percent": 1.0,
        "chunks_checked": 128,
        "bytes_reread": 128 * chunk,
        "lies": [],
        "max_chunks": 128,
        "capped": True,
        "chunks_wanted": 2622,
    }


def test_the_cap_is_per_enhancer_and_does_not_bind_below_it() -> None:
    size = 10_000 * CHUNK
    parent = {i * CHUNK: ref(i * CHUNK) for i in range(5_000)}
    both = plan_guard(
        size,
        CHUNK,
        extents=[Extent(0, 5_000 * CHUNK)],
        changed=[],
        parent=parent,
        percent=10,
        max_chunks=7,
    )
    assert len(both.holes) == 7 and len(both.unchanged) == 7
    assert all(i >= 5_000 for i in both.holes) and all(i < 5_000 for i in both.unchanged)
    report = both.check([], "lab", "x.Driver")
    assert (report.chunks_checked, report.chunks_wanted, report.capped) == (14, 1_000, True)
    # 1% of 5,000 holes is 50: under a cap of 50 nothing changes
    under = plan_guard(
        size, CHUNK, extents=[Extent(0, 5_000 * CHUNK)], changed=None, parent=None,
        percent=1, max_chunks=50,
    )  # fmt: skip
    report = under.check([], "lab", "x.Driver")
    assert len(under.holes) == 50 and not report.capped and "chunks_wanted" not in report.to_dict()


def test_the_cap_still_catches_a_lie_about_a_few_percent() -> None:
    """The module's claim: 128 samples catch a lie about 2.4% of the skipped chunks >= 95%.

    20,000 chunks reported as holes, 480 (2.4%) of which hold data; 400
    backups, each drawing its own sample: at least 93% of them catch it
    (95% expected, the margin is chance over 400 draws: the test's own
    seeds make it repeatable).
    """
    n = 20_000
    liar = random.Random(7)
    lied = set(liar.sample(range(1, n + 1), 480))
    caught = 0
    for seed in range(400):
        plan = plan_guard(
            (n + 1) * CHUNK,
            CHUNK,
            extents=[Extent(0, CHUNK)],
            changed=None,
            parent=None,
            percent=1,
            rng=random.Random(seed),
        )
        assert len(plan.holes) == 128
        caught += bool(lied & set(plan.holes))
    assert caught >= 0.93 * 400, caught


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8"])
def test_a_bad_cap_is_a_config_error_naming_it(bad: object) -> None:
    with pytest.raises(ConfigError, match="guard max chunks must be a whole number of at least 1"):
        BackupRequest("vol", guard_max_chunks=bad)  # type: ignore[arg-type]


def test_a_report_without_the_cap_reads_as_uncapped() -> None:
    """A worker of an earlier version sends no ``max_chunks``: not capped, cap unknown."""
    old = {"sample_percent": 1.0, "chunks_checked": 3, "bytes_reread": 3 * CHUNK, "lies": []}
    report = GuardReport.from_dict(old)
    assert report.max_chunks is None and not report.capped
    assert guard_stats(old) == {
        "guard_sample_percent": "1",
        "guard_chunks_checked": 3,
        "guard_bytes_reread": 3 * CHUNK,
    }
    capped = GuardReport(1.0, 8, 8 * CHUNK, (), 8, 30).to_dict()
    assert GuardReport.from_dict(capped) == GuardReport(1.0, 8, 8 * CHUNK, (), 8, 30)
    assert guard_stats(capped)["guard_max_chunks"] == 8
    assert guard_stats(capped)["guard_chunks_wanted"] == 30
