"""The pieceworks command line against the bare pipeline and borg, end to end, in one run.

What a user runs, measured side by side on the same volume (the DESIGN.md
"realistic mix" of ``bench/backup_throughput.py``: 4 MiB blocks of random,
zeros, random and log-like text, every block distinct):

* ``bare``: a two-thread read -> sha256 -> zstd-1 -> one file per block
  pipeline (no fsync), in a child process of its own; its restore reads each
  block file, decompresses, checks the sha256 and writes at the offset;
* ``pieceworks``: the ``pieceworks`` command (file driver into a posix store,
  the embedded defaults under a private ``PIECEWORKS_HOME``): ``backup``,
  ``backup --incremental`` after 1% of the blocks changed, ``restore`` into a
  new volume;
* ``borg``: borg 1.2 with fixed 4 MiB chunks and zstd-1, unencrypted
  (``borg create --chunker-params fixed,4194304 --compression zstd,1``), the
  same three steps (``borg extract`` for the restore).

Trials are interleaved (bare, pieceworks, borg, then pieceworks, borg, bare,
...) so that a noisy neighbour slows all three alike; each figure is the
median of ``--trials`` with its spread (min..max). ``--warmup`` untimed trials
run first (the first writes of a freshly booted VM into memory it never
touched cost several times the later ones). Before every measured command
the dirty pages of the previous one are written back (``sync`` and a wait
until ``/proc/meminfo`` shows no writeback), so that no command pays for
another's writes. Every command runs as a child process and is measured with
``os.wait4``: wall seconds, CPU seconds (user + system) and peak RSS. It also
times ``pieceworks --help``, ``pieceworks list`` on an empty store and a 1 MiB
backup end to end, interleaved. The pieceworks package is byte-compiled first
(as an installed package is), so that no command pays for compiling it. The
page cache cannot be dropped here: every read comes from it, for all three
alike. The load average at the start and the end is reported: compare ratios
within one run.

    .venv/bin/python bench/cli_vs_peers.py --size-mib 1024 --trials 3

borg comes from Debian's ``borgbackup`` (``make bench`` installs it through
``scripts/install-system-deps.sh``). Results are printed as a table and, with
``--json FILE``, written as JSON.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

MiB = 1 << 20
BLOCK = 4 * MiB  # the chunk size of all three, as in backup_throughput.py
ZEROS = bytes(BLOCK)
HERE = Path(__file__).resolve().parent
PIECEWORKS = str(Path(sys.executable).with_name("pieceworks"))


@dataclass
class Measure:
    """One child process: wall and CPU seconds, peak RSS in MiB."""

    wall: float
    cpu: float
    rss_mib: float


def settle(limit: int = 32 * MiB, timeout: float = 60.0) -> None:
    """Write back every dirty page and wait until the kernel has (Dirty + Writeback < `limit`).

    Called before each measured command, so that the writeback of one
    command's output is not billed to the next one.
    """
    os.sync()
    deadline = time.monotonic() + timeout
    while _dirty_bytes() >= limit and time.monotonic() < deadline:
        time.sleep(0.05)


def _dirty_bytes() -> int:
    """Dirty + Writeback bytes from /proc/meminfo (0 where there is none)."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Dirty", "Writeback"):
            total += int(rest.split()[0]) * 1024
    return total


def run(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    *,
    quiesce: bool = True,
) -> Measure:
    """Run `argv` to completion (after `settle`); raise with its output when it fails."""
    if quiesce:
        settle()
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{output.decode()[-3000:]}")
    return Measure(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


# -- the bare pipeline (runs in a child: `--bare-backup SRC DIR`, `--bare-restore DIR DST`) ----


def bare_backup(volume: Path, out: Path) -> None:
    """Two threads: read -> sha256 -> zstd-1 -> one file per block; an index file at the end."""
    out.mkdir(parents=True, exist_ok=True)
    local = threading.local()

    def store(offset: int, data: bytes) -> tuple[int, int, str]:
        if data == ZEROS[: len(data)]:
            return offset, len(data), ""
        if not hasattr(local, "c"):
            local.c = zstandard.ZstdCompressor(level=1)
        digest = hashlib.sha256(data).hexdigest()
        with open(out / digest, "wb") as o:
            o.write(local.c.compress(data))
        return offset, len(data), digest

    index = []
    with ThreadPoolExecutor(2) as pool, open(volume, "rb", buffering=0) as f:
        pending = []
        offset = 0
        while data := f.read(BLOCK):
            pending.append(pool.submit(store, offset, data))
            offset += len(data)
            if len(pending) >= 4:
                index.append(pending.pop(0).result())
        index.extend(p.result() for p in pending)
    (out / "index.json").write_text(json.dumps(index))


def bare_restore(src: Path, target: Path) -> None:
    """Two threads: read block file -> zstd decompress -> sha256 check -> pwrite."""
    index = json.loads((src / "index.json").read_text())
    size = index[-1][0] + index[-1][1] if index else 0
    local = threading.local()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def put(offset: int, length: int, digest: str) -> None:
        if not digest:
            return
        if not hasattr(local, "d"):
            local.d = zstandard.ZstdDecompressor()
        plain = local.d.decompress((src / digest).read_bytes(), max_output_size=length)
        if hashlib.sha256(plain).hexdigest() != digest:
            raise RuntimeError(f"bare restore: bad block at {offset}")
        os.pwrite(fd, plain, offset)

    try:
        os.ftruncate(fd, size)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda row: put(*row), index))
    finally:
        os.close(fd)


def make_volume(path: Path, size: int) -> None:
    """The realistic mix of ``bench/backup_throughput.py``, `size` bytes, at `path`."""
    sys.path.insert(0, str(HERE))
    from backup_throughput import Blocks, write_volume  # noqa: PLC0415 (heavy: pieceworks)

    blocks = Blocks(seed=7)
    write_volume(path, size, ((i * BLOCK, blocks.block(i)) for i in range(size // BLOCK)))


# -- the three systems -------------------------------------------------------------------


@dataclass
class Systems:
    """Per-trial state of the three systems under one work directory."""

    work: Path
    volume: Path
    env: dict[str, str] = field(default_factory=dict)

    def pw_env(self) -> dict[str, str]:
        return {**os.environ, "PIECEWORKS_HOME": str(self.work / "pw")}

    def borg_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BORG_BASE_DIR": str(self.work / "borg-base"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }

    def reset(self) -> None:
        for name in ("pw", "borg-base", "borg-repo", "bare", "bare-inc", "restore"):
            shutil.rmtree(self.work / name, ignore_errors=True)
        (self.work / "pw" / "volumes").mkdir(parents=True)
        (self.work / "restore").mkdir()
        # The file driver's volume: a hard link, so the 1% change below reaches all three.
        os.link(self.volume, self.work / "pw" / "volumes" / "vol")

    # bare
    def bare_full(self) -> Measure:
        cmd = [sys.executable, __file__, "--bare-backup", str(self.volume), str(self.work / "bare")]
        return run(cmd)

    def bare_incremental(self) -> Measure:
        out = str(self.work / "bare-inc")
        return run([sys.executable, __file__, "--bare-backup", str(self.volume), out])

    def bare_restore(self) -> Measure:
        target = str(self.work / "restore" / "bare")
        return run([sys.executable, __file__, "--bare-restore", str(self.work / "bare"), target])

    # pieceworks
    def pw_full(self) -> Measure:
        return run([PIECEWORKS, "backup", "--volume", "vol", "-q"], env=self.pw_env())

    def pw_incremental(self) -> Measure:
        argv = [PIECEWORKS, "backup", "--volume", "vol", "--incremental", "-q"]
        return run(argv, env=self.pw_env())

    def pw_restore(self) -> Measure:
        listing = subprocess.run(
            [PIECEWORKS, "list", "--json"],
            env=self.pw_env(),
            check=True,
            capture_output=True,
            text=True,
        )
        rows = json.loads(listing.stdout)
        rows = rows.get("backups", rows) if isinstance(rows, dict) else rows
        first = min(rows, key=lambda row: row.get("created", 0))
        backup_id = first.get("backup_id") or first["id"]
        argv = [PIECEWORKS, "restore", backup_id, "--volume", "restored", "-q"]
        return run(argv, env=self.pw_env())

    # borg
    def borg_full(self) -> Measure:
        repo = str(self.work / "borg-repo")
        run(["borg", "init", "-e", "none", repo], env=self.borg_env())
        return self._borg_create("full")

    def borg_incremental(self) -> Measure:
        return self._borg_create("inc")

    def _borg_create(self, name: str) -> Measure:
        argv = [
            "borg",
            "create",
            "--chunker-params",
            f"fixed,{BLOCK}",
            "--compression",
            "zstd,1",
            f"{self.work / 'borg-repo'}::{name}",
            str(self.volume.name),
        ]
        return run(argv, env=self.borg_env(), cwd=self.volume.parent)

    def borg_restore(self) -> Measure:
        argv = ["borg", "extract", f"{self.work / 'borg-repo'}::full"]
        return run(argv, env=self.borg_env(), cwd=self.work / "restore")


def change_one_percent(volume: Path, seed: int) -> None:
    """Rewrite 1% of the 4 MiB blocks (at least one) with fresh random data, in place."""
    blocks = volume.stat().st_size // BLOCK
    rng = random.Random(seed)
    with open(volume, "r+b") as f:
        for index in rng.sample(range(blocks), max(1, blocks // 100)):
            os.pwrite(f.fileno(), os.urandom(BLOCK), index * BLOCK)


def small_commands(work: Path, rounds: int = 7) -> dict[str, dict[str, float]]:
    """`--help`, `list` on an empty store and a 1 MiB backup, interleaved `rounds` times.

    Each figure: median, min and max wall seconds and median CPU seconds
    (the first round is a warm-up and not counted).
    """
    home = work / "small"
    shutil.rmtree(home, ignore_errors=True)
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "one").write_bytes(os.urandom(MiB))
    env = {**os.environ, "PIECEWORKS_HOME": str(home)}
    commands = {
        "help": [PIECEWORKS, "--help"],
        "list_empty": [PIECEWORKS, "list"],
        "backup_1mib": [PIECEWORKS, "backup", "--volume", "one", "-q"],
    }
    measures: dict[str, list[Measure]] = {name: [] for name in commands}
    for round_ in range(rounds + 1):
        for name, argv in commands.items():
            if name == "list_empty":  # list an empty store: before any backup of this round
                shutil.rmtree(home / "backups", ignore_errors=True)
            measure = run(argv, env=env)
            if round_:
                measures[name].append(measure)
    return {name: _summary(values) for name, values in measures.items()}


def _summary(measures: Sequence[Measure]) -> dict[str, float]:
    walls = [m.wall for m in measures]
    return {
        "seconds": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "cpu_seconds": statistics.median(m.cpu for m in measures),
    }


PHASES = ("full", "incremental", "restore")
SYSTEMS = ("bare", "pieceworks", "borg")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed trials first")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--bare-backup", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare-restore", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make-volume", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_volume:
        make_volume(Path(args.make_volume[0]), int(args.make_volume[1]))
        return 0
    if args.bare_backup:
        bare_backup(*args.bare_backup)
        return 0
    if args.bare_restore:
        bare_restore(*args.bare_restore)
        return 0
    if shutil.which("borg") is None:
        print("borg not found: run scripts/install-system-deps.sh borg:borgbackup", file=sys.stderr)
        return 2

    size = args.size_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="pw-peers-", dir=args.workdir))
    try:
        pristine = work / "pristine.raw"
        # Made in a child, so that this process stays small: a forked child's peak RSS
        # counts the parent's pages until it execs.
        run([sys.executable, __file__, "--make-volume", str(pristine), str(size)])
        # Byte-compile pieceworks as installing it does (the environment may forbid
        # writing bytecode), so that no measured command compiles sources.
        compileall.compile_dir(str(HERE.parent / "pieceworks"), quiet=1)
        load_start = os.getloadavg()
        results: dict[str, dict[str, list[Measure]]] = {s: {p: [] for p in PHASES} for s in SYSTEMS}
        for trial in range(-args.warmup, args.trials):
            order = SYSTEMS[trial % 3 :] + SYSTEMS[: trial % 3]
            for system in order:
                volume = work / "volume.raw"
                shutil.copyfile(pristine, volume)
                systems = Systems(work, volume)
                systems.reset()
                full = getattr(systems, f"{_short(system)}_full")()
                change_one_percent(volume, seed=trial)
                incremental = getattr(systems, f"{_short(system)}_incremental")()
                restore = getattr(systems, f"{_short(system)}_restore")()
                if trial >= 0:
                    for phase, measure in zip(PHASES, (full, incremental, restore), strict=True):
                        results[system][phase].append(measure)
                label = "warm-up" if trial < 0 else f"trial {trial + 1}"
                print(
                    f"{label} {system:10} full {full.wall:6.2f} s  "
                    f"incremental {incremental.wall:6.2f} s  restore {restore.wall:6.2f} s",
                    file=sys.stderr,
                )
        small = small_commands(work)
        load_end = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = _report(results, size, small)
    report["load_average_1min"] = {"start": load_start[0], "end": load_end[0]}
    print(_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _short(system: str) -> str:
    return {"bare": "bare", "pieceworks": "pw", "borg": "borg"}[system]


def _report(
    results: dict[str, dict[str, list[Measure]]], size: int, small: dict[str, dict[str, float]]
) -> dict[str, object]:
    gib = size / (1 << 30)
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for system, phases in results.items():
        figures[system] = {}
        for phase, measures in phases.items():
            figures[system][phase] = {
                "seconds": statistics.median(m.wall for m in measures),
                "min": min(m.wall for m in measures),
                "max": max(m.wall for m in measures),
                "cpu_seconds_per_gib": statistics.median(m.cpu for m in measures) / gib,
                "peak_rss_mib": max(m.rss_mib for m in measures),
            }
    pw, bare, borg = figures["pieceworks"], figures["bare"], figures["borg"]
    ratios = {
        "full_vs_bare": bare["full"]["seconds"] / pw["full"]["seconds"],
        "full_vs_borg": borg["full"]["seconds"] / pw["full"]["seconds"],
        "incremental_vs_borg": borg["incremental"]["seconds"] / pw["incremental"]["seconds"],
        "restore_vs_borg": borg["restore"]["seconds"] / pw["restore"]["seconds"],
    }
    return {"size_bytes": size, "figures": figures, "speedups": ratios, "small_commands": small}


def _table(report: dict[str, object]) -> str:
    figures = report["figures"]
    assert isinstance(figures, dict)
    lines = [
        f"{'system':12}{'phase':13}{'seconds':>9}{'spread':>14}{'CPU-s/GiB':>11}"
        f"{'peak RSS MiB':>14}",
    ]
    for system, phases in figures.items():
        for phase, f in phases.items():
            spread = f"{f['min']:.2f}..{f['max']:.2f}"
            lines.append(
                f"{system:12}{phase:13}{f['seconds']:9.2f}{spread:>14}"
                f"{f['cpu_seconds_per_gib']:11.2f}{f['peak_rss_mib']:14.1f}"
            )
    speedups = report["speedups"]
    assert isinstance(speedups, dict)
    lines.append("")
    lines.extend(f"{name:22}{value:6.2f}x" for name, value in speedups.items())
    small = report["small_commands"]
    assert isinstance(small, dict)
    lines.append("")
    lines.extend(
        f"{name:22}{v['seconds']:6.3f} s ({v['min']:.3f}..{v['max']:.3f}),"
        f" {v['cpu_seconds']:.3f} CPU-s"
        for name, v in small.items()
    )
    load = report["load_average_1min"]
    assert isinstance(load, dict)
    lines.append(
        f"\nload average (1 min): {load['start']:.2f} at the start, {load['end']:.2f} at the end"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
