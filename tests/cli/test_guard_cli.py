"""``pieceworks backup`` with lying drivers: the guard warns, names the offsets, backs up right.

The drivers are installed as out-of-tree plugins (a dist-info with
``pieceworks.drivers`` entry points in a temporary directory): the change
tracking file driver of tests/support/tracking.py and its liars of
tests/support/liars.py. Each backup runs the real console script; every
backup is restored with ``--to-file`` and compared byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

from pieceworks.protocols import VolumeRef
from tests.cli.conftest import REPO, Run
from tests.support.liars import OmitsLastChangedBlock, OmitsLastExtent
from tests.support.tracking import TrackingFileDriver

CHUNK = 64 * 1024
DRIVERS = {
    "tracking": "tests.support.tracking:TrackingFileDriver",
    "liar-blocks": "tests.support.liars:OmitsLastChangedBlock",
    "liar-extents": "tests.support.liars:OmitsLastExtent",
}


def setup(
    tmp_path: Path, env: dict[str, str], driver: str, backup_table: str = ""
) -> dict[str, str]:
    """A configuration with backend ``lab`` (`driver`) and store ``s``, and the plugins' env."""
    plugins = tmp_path / "plugins"
    info = plugins / "pw_guard_testdrivers-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pw-guard-testdrivers\nVersion: 1.0\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in DRIVERS.items())
    (info / "entry_points.txt").write_text(f"[pieceworks.drivers]\n{lines}")
    (tmp_path / "volumes").mkdir()
    config = tmp_path / "pieceworks.toml"
    config.write_text(
        '[engine]\npersistence = "memory://"\n'
        f'[backends.lab]\ndriver = "{driver}"\npath = "{tmp_path / "volumes"}"\n'
        f'[stores.s]\ndriver = "posix"\npath = "{tmp_path / "store"}"\n' + backup_table,
        encoding="utf-8",
    )
    path = os.pathsep.join([str(plugins), str(REPO), env.get("PYTHONPATH", "")])
    return {**env, "PIECEWORKS_CONFIG": str(config), "PYTHONPATH": path.rstrip(os.pathsep)}


def sparse_volume(driver: TrackingFileDriver, size: int, data: dict[int, bytes]) -> None:
    """Volume ``vol`` of `size` bytes: `data` at its offsets, holes elsewhere."""
    w = driver.open_write(VolumeRef("vol"), size)
    for offset, chunk in sorted(data.items()):
        w.write_at(offset, chunk)
    w.commit()


BACKUP = ("backup", "--volume", "vol", "--incremental", "--chunk-size", "64KiB", "--json")


def restored(run: Run, env: dict[str, str], backup_id: str, tmp_path: Path) -> bytes:
    target = tmp_path / f"{backup_id}.img"
    done = run("restore", backup_id, "--to-file", str(target), env=env)
    assert done.code == 0, done
    return target.read_bytes()


def test_a_lying_changed_blocks_driver_is_caught_through_the_cli(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """--guard-sample 100: the left-out write is named by offset, the backup restores right."""
    e = setup(tmp_path, env, "liar-blocks")
    driver = OmitsLastChangedBlock(tmp_path / "volumes")
    data = bytearray(os.urandom(8 * CHUNK))
    sparse_volume(driver, len(data), {0: bytes(data)})
    first = run(*BACKUP, env=e)
    assert first.code == 0, first
    for offset in (2 * CHUNK + 1, 6 * CHUNK + 3):
        driver.write_in_place("vol", offset, b"new bytes")
        data[offset : offset + 9] = b"new bytes"
    second = run(*BACKUP, "--guard-sample", "100", env=e)
    assert second.code == 0, second
    doc = second.json()
    [lie] = doc["guard"]["lies"]
    assert lie == {
        "enhancer": "changed-blocks",
        "backend": "lab",
        "driver": "tests.support.liars.OmitsLastChangedBlock",
        "offsets": [6 * CHUNK],
    }
    assert doc["enhancers_used"] == {}
    assert doc["warnings"] and str(6 * CHUNK) in doc["warnings"][0]
    assert "warning" in second.err.lower()
    assert "changed-blocks of backend 'lab' (driver tests.support.liars.OmitsLastChangedBlock)" in (
        second.err
    )
    assert f"byte offsets {6 * CHUNK}" in second.err
    assert restored(run, e, doc["backup_id"], tmp_path) == data
    shown = run("show", doc["backup_id"], "--json", env=e)
    assert shown.code == 0, shown
    assert shown.json()["guard"]["lies"][0]["offsets"] == [6 * CHUNK]


def test_a_lying_allocated_extents_driver_is_caught_through_the_cli(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """``[backup] guard_sample = 100`` in the TOML: the data extent left out is named."""
    e = setup(tmp_path, env, "liar-extents", "[backup]\nguard_sample = 100\n")
    driver = OmitsLastExtent(tmp_path / "volumes")
    first, last = os.urandom(CHUNK), os.urandom(CHUNK)
    sparse_volume(driver, 6 * CHUNK, {0: first, 4 * CHUNK: last})
    done = run(*BACKUP, env=e)
    assert done.code == 0, done
    doc = done.json()
    assert [(x["enhancer"], x["offsets"]) for x in doc["guard"]["lies"]] == [
        ("allocated-extents", [4 * CHUNK])
    ]
    assert f"byte offsets {4 * CHUNK}" in done.err
    expected = first + bytes(3 * CHUNK) + last + bytes(CHUNK)
    assert restored(run, e, doc["backup_id"], tmp_path) == expected


def test_an_honest_driver_reports_its_enhancers_and_no_warning(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """The honest tracking driver: no warning; backup and show give each enhancer's skip."""
    e = setup(tmp_path, env, "tracking")
    driver = TrackingFileDriver(tmp_path / "volumes")
    data = bytearray(os.urandom(10 * CHUNK))
    sparse_volume(driver, 12 * CHUNK, {0: bytes(data)})
    assert run(*BACKUP, env=e).code == 0
    driver.write_in_place("vol", 3 * CHUNK, b"honest")
    data[3 * CHUNK : 3 * CHUNK + 6] = b"honest"
    done = run(*BACKUP[:-1], env=e)  # the text report
    assert done.code == 0, done
    assert "warning" not in done.err.lower()
    assert "changed-blocks (skipped" in done.out and "allocated-extents (skipped" in done.out
    assert "no lie found" in done.out
    backup_id = done.out.split()[1]
    shown = run("show", backup_id, "--json", env=e).json()
    used = shown["enhancers_used"]
    # 12 chunks: 1 changed and read, 1 unchanged and 1 hole sampled, 8 unchanged, 1 hole
    assert used == {
        "allocated-extents": {"bytes_skipped": CHUNK},
        "changed-blocks": {"bytes_skipped": 8 * CHUNK},
    }
    assert shown["guard"] == {
        "sample_percent": 1.0,
        "chunks_checked": 2,
        "bytes_reread": 2 * CHUNK,
        "lies": [],
        "max_chunks": 128,
        "capped": False,
    }
    text = run("show", backup_id, env=e).out
    assert "changed-blocks skipped" in text
    assert restored(run, e, backup_id, tmp_path) == bytes(data) + bytes(2 * CHUNK)


def test_a_bad_guard_sample_is_a_usage_error(run: Run, env: dict[str, str], tmp_path: Path) -> None:
    e = setup(tmp_path, env, "tracking")
    done = run("backup", "--volume", "vol", "--guard-sample", "150", env=e)
    assert done.code == 2, done
    assert "invalid percentage '150'" in done.err
    e2 = setup(tmp_path / "other", env, "tracking", '[backup]\nguard_sample = "lots"\n')
    done = run("backup", "--volume", "vol", env=e2)
    assert done.code == 2, done
    assert "guard_sample must be a number of percent" in done.err
