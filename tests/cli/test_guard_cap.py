"""The sampling guard's cap on a large thin volume, through the real command line.

A 64 GiB sparse file made with ``truncate`` holds two MiB of data; the
file driver reports the rest as holes (``SEEK_DATA``). At the default 1%
the guard would re-read 164 of its 16,382 hole chunks of 4 MiB (656 MiB of
zeros on every backup, ~10 GiB at 1 TiB); the cap (128 chunks per
enhancer, ``--guard-max-chunks``, ``[backup] guard_max_chunks``) bounds
that whatever the size. What the process really read (``rchar`` of
/proc/self/io, read as the command ends) is checked against the cap, not
only the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Run

GiB, MiB = 1024**3, 1024**2
CHUNK = 4 * MiB
SIZE = 64 * GiB
HOLES = SIZE // CHUNK - 2  # two chunks hold data
#: Bytes any run reads besides the volume: modules, configuration, the store.
OVERHEAD = 96 * MiB

_PROBE = """
import sys
from pieceworks.cli.main import main
code = main(sys.argv[1:])
with open("/proc/self/io") as f:
    io = dict(line.split(": ") for line in f.read().splitlines())
print(int(io["rchar"]), file=sys.stderr)
sys.exit(code)
"""


def big_volume(home: Path) -> Path:
    """``big``: 64 GiB made with truncate, 1 MiB of data at 0 and at 32 GiB."""
    volumes = home / "volumes"
    volumes.mkdir(parents=True, exist_ok=True)
    path = volumes / "big"
    subprocess.run(["truncate", "-s", str(SIZE), str(path)], check=True)
    with path.open("r+b") as f:
        for offset in (0, 32 * GiB):
            f.seek(offset)
            f.write(os.urandom(MiB))
    if os.stat(path).st_blocks * 512 > 16 * MiB:
        pytest.skip("this file system does not keep the file sparse")
    return path


def backup(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """``pieceworks backup --volume big --json ARGS``: bytes the process read, document, stderr."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "backup", "--volume", "big", "--json", *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    rchar = int(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr
    return rchar, json.loads(done.stdout), done.stderr


def test_the_default_cap_bounds_the_bytes_a_thin_volume_re_reads(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    big_volume(home)
    rchar, doc, _ = backup(env, tmp_path)
    guard = doc["guard"]
    wanted = -(-HOLES // 100)  # 164: what 1% alone asks for
    assert guard == {
        "sample_percent": 1.0,
        "chunks_checked": 128,
        "bytes_reread": 128 * CHUNK,
        "lies": [],
        "max_chunks": 128,
        "capped": True,
        "chunks_wanted": wanted,
    }
    assert doc["enhancers_used"] == {"allocated-extents": {"bytes_skipped": (HOLES - 128) * CHUNK}}
    # read: the two data chunks and the sample, nothing of the other 16,254 holes
    assert doc["bytes_read"] == (2 + 128) * CHUNK
    assert rchar < (2 + 128) * CHUNK + OVERHEAD < (2 + wanted) * CHUNK, rchar
    shown = run("show", doc["backup_id"], env=env)
    assert shown.code == 0, shown
    assert f"(1%, capped at 128 per enhancer from {wanted}): no lie found" in shown.out
    assert run("show", doc["backup_id"], "--json", env=env).json()["guard"] == guard


def test_a_smaller_cap_from_the_option_or_the_configuration(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    big_volume(home)
    rchar, doc, _ = backup(env, tmp_path, "--guard-max-chunks", "8")
    assert doc["guard"]["bytes_reread"] == 8 * CHUNK and doc["guard"]["chunks_checked"] == 8
    assert doc["guard"]["max_chunks"] == 8 and doc["guard"]["capped"] is True
    assert rchar < (2 + 8) * CHUNK + OVERHEAD, rchar
    config = Path(env["PIECEWORKS_CONFIG"])
    config.write_text(
        config.read_text(encoding="utf-8") + "[backup]\nguard_max_chunks = 3\n", encoding="utf-8"
    )
    done = run("backup", "--volume", "big", env=env, timeout=300)
    assert done.code == 0, done
    assert "guard     re-read 12.0 MiB (3 sampled chunks, 1%, capped at 3 per enhancer" in done.out
    # the option overrides the configuration; above what 1% asks for, nothing is capped
    _, doc, _ = backup(env, tmp_path, "--guard-max-chunks", "1000")
    assert doc["guard"]["chunks_checked"] == -(-HOLES // 100) and doc["guard"]["capped"] is False


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "many"])
def test_a_bad_cap_option_is_a_usage_error(run: Run, value: str) -> None:
    done = run("backup", "--volume", "v", "--guard-max-chunks", value, "--json")
    assert done.code == 2, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert error["message"] == (
        f"pieceworks backup: argument --guard-max-chunks: invalid number of chunks {value!r}:"
        " give a whole number of at least 1"
    ), error


@pytest.mark.parametrize("value", ["0", "-1", "2.5", '"lots"', "true"])
def test_a_bad_cap_in_the_configuration_names_section_and_key(
    run: Run, env: dict[str, str], value: str
) -> None:
    config = Path(env["PIECEWORKS_CONFIG"])
    config.write_text(
        config.read_text(encoding="utf-8") + f"[backup]\nguard_max_chunks = {value}\n",
        encoding="utf-8",
    )
    done = run("backup", "--volume", "v", "--json", env=env)
    assert done.code == 2, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "config-error", error
    assert (
        f"{config} [backup]: guard_max_chunks must be a whole number of chunks, at least 1"
        in (error["message"])
    ), error
