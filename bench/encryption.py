"""Encrypted against plain stores, through the pieceworks command, in one run.

The same volume (the DESIGN.md "realistic mix" of ``bench/backup_throughput.py``)
is backed up with ``pieceworks backup`` into a plain posix store and into an
encrypted one (``pieceworks key init``: AES-256-GCM sealed objects, HMAC-SHA256
chunk ids), then restored from each with ``pieceworks restore``. Trials are
interleaved (plain, encrypted, encrypted, plain, ...) and each figure is the
median; every command is a child process measured with ``os.wait4`` (wall and
CPU seconds), after the previous command's writes are on disk (`settle`).
``--warmup`` untimed trials run first. The target of issue 13: an encrypted
backup runs at no less than 90% of the plain one's speed. Besides the
medians it reports each figure's spread (min..max), the encrypted/plain
ratio of CPU seconds, and the load average at the start and the end.

    .venv/bin/python bench/encryption.py --size-mib 1024 --trials 3
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cli_vs_peers import PIECEWORKS, Measure, run

MiB = 1 << 20
PASSWORD = "bench-passphrase-not-secret"


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PIECEWORKS_HOME": str(home),
        "PIECEWORKS_PASSWORD": PASSWORD,
    }


def _trial(work: Path, volume: Path, encrypted: bool) -> tuple[Measure, Measure]:
    home = work / ("sealed" if encrypted else "plain")
    shutil.rmtree(home, ignore_errors=True)
    (home / "volumes").mkdir(parents=True)
    os.link(volume, home / "volumes" / "vol")
    env = _env(home)
    if encrypted:
        run([PIECEWORKS, "key", "init", "-q"], env=env)
    backup = run([PIECEWORKS, "backup", "--volume", "vol", "-q"], env=env)
    listing = run_json([PIECEWORKS, "list", "--json"], env)
    backup_id = str(listing[0].get("backup_id") or listing[0]["id"])
    restore = run([PIECEWORKS, "restore", backup_id, "--volume", "restored", "-q"], env=env)
    shutil.rmtree(home, ignore_errors=True)
    return backup, restore


def run_json(argv: list[str], env: dict[str, str]) -> list[dict[str, object]]:
    import subprocess  # noqa: PLC0415

    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    return rows.get("backups", rows) if isinstance(rows, dict) else rows  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed trials first")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    size = args.size_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="pw-crypto-", dir=args.workdir))
    here = Path(__file__).resolve().parent
    try:
        volume = work / "volume.raw"
        run(
            [sys.executable, str(here / "cli_vs_peers.py"), "--make-volume", str(volume), str(size)]
        )
        figures: dict[str, dict[str, list[Measure]]] = {
            kind: {"backup": [], "restore": []} for kind in ("plain", "encrypted")
        }
        compileall.compile_dir(str(here.parent / "pieceworks"), quiet=1)  # as installed
        load_start = os.getloadavg()[0]
        for trial in range(-args.warmup, args.trials):
            order = (False, True) if trial % 2 == 0 else (True, False)
            for encrypted in order:
                kind = "encrypted" if encrypted else "plain"
                backup, restore = _trial(work, volume, encrypted)
                if trial >= 0:
                    figures[kind]["backup"].append(backup)
                    figures[kind]["restore"].append(restore)
                label = "warm-up" if trial < 0 else f"trial {trial + 1}"
                print(
                    f"{label} {kind:9} backup {backup.wall:6.2f} s  restore {restore.wall:6.2f} s",
                    file=sys.stderr,
                )
        load_end = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report: dict[str, object] = {
        "size_bytes": size,
        "load_average_1min": {"start": load_start, "end": load_end},
    }
    for kind, phases in figures.items():
        for phase, measures in phases.items():
            seconds = statistics.median(m.wall for m in measures)
            report[f"{kind}_{phase}_seconds"] = seconds
            report[f"{kind}_{phase}_mb_per_s"] = size / seconds / 1e6
            report[f"{kind}_{phase}_cpu_seconds"] = statistics.median(m.cpu for m in measures)
            report[f"{kind}_{phase}_spread_seconds"] = [
                min(m.wall for m in measures),
                max(m.wall for m in measures),
            ]
    for phase in ("backup", "restore"):
        report[f"{phase}_speed_ratio"] = (
            report[f"plain_{phase}_seconds"] / report[f"encrypted_{phase}_seconds"]  # type: ignore[operator]
        )
        report[f"{phase}_cpu_ratio"] = (
            report[f"encrypted_{phase}_cpu_seconds"] / report[f"plain_{phase}_cpu_seconds"]  # type: ignore[operator]
        )
    for phase in ("backup", "restore"):
        print(
            f"{phase:8} plain {report[f'plain_{phase}_mb_per_s']:7.1f} MB/s"
            f"  encrypted {report[f'encrypted_{phase}_mb_per_s']:7.1f} MB/s"
            f"  encrypted/plain speed {report[f'{phase}_speed_ratio']:.2f}"
            f"  (CPU-s encrypted/plain {report[f'{phase}_cpu_ratio']:.2f};"
            f" spread plain {report[f'plain_{phase}_spread_seconds']},"
            f" encrypted {report[f'encrypted_{phase}_spread_seconds']})"
        )
    print(f"load average (1 min): {load_start:.2f} at the start, {load_end:.2f} at the end")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
