"""The rbd driver on a real single-node Ceph cluster: backup, incremental, restore, replication.

Starts a cluster with ``scripts/ceph/run_ceph.py`` (one monitor, one
memstore OSD: the data lives in the OSD's RAM, so ``--memstore-mib`` caps it;
about 3x the image is used at the peak), writes the DESIGN.md "realistic
mix" image (4 MiB blocks: random, zeros, random, log-like text; every block
distinct) through librbd, and measures in one run, on the same data:

  (a) bare baseline: ``rbd export <image> -`` piped into the bare
      read -> sha256 -> zstd-1 -> one file per block pipeline
      (`backup_throughput.baseline_backup`'s loop on the pipe);
  (b) pieceworks full backup (``backup()``, in use: snapshot-stream with
      allocated-extents and changed-blocks) into a POSIX store (no fsync);
  (c) 1% of the 4 MiB blocks rewritten in place by a librbd client;
  (d) pieceworks incremental backup: `bytes_read` must be <= 2% of the image;
  (e) pieceworks restore of the incremental into a new image (stream-in,
      thin), checked by sha256 against the source;
  (f) bare restore baseline: the blocks of (a) decompressed, checked and
      piped into ``rbd import - <image>``;
  (g) replication to a second pool after the change: native (incremental
      from the last common snapshot, taken by a first native copy before the
      change) against stream (``replicate()`` with the stream strategy,
      through the manager): seconds and bytes moved.

MB/s are 10^6 bytes of image per second. One run; the machine is shared, so
compare the ratios measured here. (Named ``ceph_rbd.py``: a script called
``rbd.py`` would shadow librbd's ``rbd`` module, its own directory being
first on ``sys.path``.)

    .venv/bin/python bench/ceph_rbd.py --size-mib 1024
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rados
import rbd
from backup_throughput import BLOCK, Blocks, MiB
from stores import format_table

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    ReplicateOutcome,
    ReplicateRequest,
    RestoreRequest,
    Store,
    backup,
    replicate,
    restore,
)
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.rbd import RbdDriver
from pieceworks.protocols import BackendSpec, ReplicatedVolume, StoreSpec, VolumeRef

RUN_CEPH = Path(__file__).resolve().parents[1] / "scripts" / "ceph" / "run_ceph.py"
IMAGE = "bench"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def image_sha256(ioctx: rados.Ioctx, name: str) -> str:
    h = hashlib.sha256()
    with rbd.Image(ioctx, name, read_only=True) as image:
        size = image.size()
        for offset in range(0, size, BLOCK):
            h.update(image.read(offset, min(BLOCK, size - offset)))
    return h.hexdigest()


def bare_export_backup(conf: str, pool: str, out: Path) -> list[tuple[int, int, str]]:
    """(a): rbd export -> read -> sha256 -> zstd-1 -> one file per block."""
    out.mkdir()
    compressor = zstandard.ZstdCompressor(level=1)
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    blocks = []
    offset = 0
    proc = subprocess.Popen(
        ["rbd", "export", "--no-progress", f"{pool}/{IMAGE}", "-"],
        env={**os.environ, "CEPH_CONF": conf},
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    with proc.stdout as pipe:
        while True:
            n = 0
            while n < BLOCK:  # a pipe returns short reads: fill the block
                got = os.readv(pipe.fileno(), [view[n:]])
                if not got:
                    break
                n += got
            if n == 0:
                break
            data = view[:n]
            digest = hashlib.sha256(data).hexdigest()
            with open(out / digest, "wb") as o:
                o.write(compressor.compress(data))
            blocks.append((offset, n, digest))
            offset += n
    if proc.wait() != 0:
        raise RuntimeError("rbd export failed")
    return blocks


def bare_import_restore(
    conf: str, pool: str, name: str, blocks: list[tuple[int, int, str]], src: Path
) -> None:
    """(f): read file -> zstd decompress -> sha256 check -> rbd import -."""
    decompressor = zstandard.ZstdDecompressor()
    proc = subprocess.Popen(
        ["rbd", "import", "--no-progress", "-", f"{pool}/{name}"],
        env={**os.environ, "CEPH_CONF": conf},
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    with proc.stdin as pipe:
        for offset, length, digest in blocks:
            plain = decompressor.decompress((src / digest).read_bytes(), max_output_size=length)
            if hashlib.sha256(plain).hexdigest() != digest:
                raise RuntimeError(f"bare restore: bad block at {offset}")
            pipe.write(plain)
    if proc.wait() != 0:
        raise RuntimeError("rbd import failed")


LABELS = {
    "bare_export_backup": "bare: rbd export | sha256 | zstd-1 | files",
    "pieceworks_full": "pieceworks full backup (snapshot-stream)",
    "pieceworks_incremental": "pieceworks incremental ({changed} blocks changed)",
    "pieceworks_restore": "pieceworks restore (stream-in, thin)",
    "bare_import_restore": "bare: files | zstd -d | sha256 | rbd import",
    "native_first": "native replication, first copy (full)",
    "native_incremental": "native replication after the change",
    "stream_replication": "stream replication after the change",
}


def table(figures: dict[str, Any], notes: dict[str, str], size: int, changed: int) -> str:
    """The figures as a plain-text table: seconds, MB/s of image, bytes moved."""
    rows = []
    for key, label in LABELS.items():
        seconds = float(figures[key]["seconds"])
        rows.append(
            [
                label.format(changed=changed),
                f"{seconds:.2f}",
                f"{size / seconds / 1e6:.0f}",
                notes.get(key, ""),
            ]
        )
    return format_table(["what", "seconds", "MB/s", "bytes"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--memstore-mib", type=int, default=0, help="default: 3.5x the image")
    parser.add_argument("--change-percent", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    nblocks = max(4, args.size_mib * MiB // BLOCK)
    size = nblocks * BLOCK
    memstore = args.memstore_mib or int(args.size_mib * 3.5) + 512
    with tempfile.TemporaryDirectory(prefix="pw-bench-rbd-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        started = subprocess.run(
            [sys.executable, str(RUN_CEPH), "start", "--dir", str(root / "ceph"),
             "--extra-pool", "rbd2", "--memstore-mib", str(memstore)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if started.returncode != 0:
            print(started.stderr, file=sys.stderr)
            return 1
        info = json.loads(started.stdout)
        try:
            return run(root, info, nblocks, size, args.change_percent, args.json)
        finally:
            subprocess.run(
                [sys.executable, str(RUN_CEPH), "stop", "--dir", str(root / "ceph")], check=False
            )


def write_image(ioctx: rados.Ioctx, nblocks: int, size: int) -> None:
    """The realistic-mix image; zero blocks are never written, so it is thin."""
    gen = Blocks(seed=7)
    rbd.RBD().create(ioctx, IMAGE, size, old_format=False)
    with rbd.Image(ioctx, IMAGE) as image:
        for i in range(nblocks):
            if i % 4 != 1:
                image.write(gen.block(i), i * BLOCK)
    print(f"image written: {size / MiB:.0f} MiB", file=sys.stderr)


def rewrite(ioctx: rados.Ioctx, nblocks: int, percent: float) -> list[int]:
    """(c): rewrite `percent` % of the 4 MiB blocks in place, as the image's user would."""
    changed = random.Random(11).sample(range(nblocks), max(1, round(nblocks * percent / 100)))
    with rbd.Image(ioctx, IMAGE) as image:
        for i in changed:
            image.write(os.urandom(BLOCK), i * BLOCK)
    return changed


def replicate_after_change(
    source: Backend, target: Backend, other_io: rados.Ioctx, want: str, figures: dict[str, Any]
) -> tuple[ReplicatedVolume, ReplicateOutcome]:
    """(g): native (incremental) and stream replication after the change; both checked."""
    driver, peer = source.driver, target.spec
    assert isinstance(driver, RbdDriver) and peer is not None
    seconds, again = timed(lambda: driver.replicate_to(VolumeRef(IMAGE), peer, VolumeRef(IMAGE)))
    figures["native_incremental"] = {"seconds": seconds, "bytes_sent": again.bytes_sent}
    stream_request = ReplicateRequest(
        IMAGE, target_volume_id="bench-stream", in_use=True, strategies=("stream",)
    )
    seconds, streamed = timed(lambda: replicate(source, target, stream_request))
    figures["stream_replication"] = {
        "seconds": seconds,
        "bytes_through_manager": streamed.bytes_through_manager,
    }
    figures["replicas_equal"] = (
        image_sha256(other_io, IMAGE) == want == image_sha256(other_io, "bench-stream")
    )
    target_driver = target.driver
    assert isinstance(target_driver, RbdDriver)
    target_driver.delete_volume("bench-stream")
    return again, streamed


def run(
    root: Path, info: dict[str, Any], nblocks: int, size: int, percent: float, out: Path | None
) -> int:
    conf, pool = str(info["conf"]), str(info["pool"])
    options = {"pool": pool, "conf": conf}
    other = {"pool": "rbd2", "conf": conf}
    source = Backend.of("ceph", RbdDriver(**options), BackendSpec("ceph", "rbd", options))
    target = Backend.of("ceph2", RbdDriver(**other), BackendSpec("ceph2", "rbd", other))
    driver = source.driver
    assert isinstance(driver, RbdDriver)
    cluster = rados.Rados(conffile=conf, name="client.admin")
    cluster.connect(timeout=30)
    ioctx = cluster.open_ioctx(pool)
    figures: dict[str, Any] = {"image_bytes": size, "cluster_start_seconds": info["seconds"]}

    write_image(ioctx, nblocks, size)

    # Native replication, first (full) copy: the common snapshot for later.
    peer = target.spec
    assert peer is not None
    seconds, first = timed(lambda: driver.replicate_to(VolumeRef(IMAGE), peer, VolumeRef(IMAGE)))
    figures["native_first"] = {"seconds": seconds, "bytes_sent": first.bytes_sent}

    seconds, blocks = timed(lambda: bare_export_backup(conf, pool, root / "bare"))
    figures["bare_export_backup"] = {"seconds": seconds, "bytes_read": size}

    store_dir = root / "store"
    store = Store(
        "bench",
        PosixStore(store_dir, durable=False),
        StoreSpec("bench", "posix", {"path": str(store_dir)}),
    )
    request = BackupRequest(IMAGE, in_use=True, incremental=True)
    seconds, full = timed(lambda: backup(source, store, request))
    figures["pieceworks_full"] = {
        "seconds": seconds, "bytes_read": full.bytes_read, "strategy": full.strategy,
        "enhancers": list(full.plan.strategies[1].enhancers),
    }  # fmt: skip

    changed = rewrite(ioctx, nblocks, percent)
    figures["changed_blocks"] = len(changed)

    incr_request = BackupRequest(IMAGE, in_use=True, incremental=True)
    seconds, incr = timed(lambda: backup(source, store, incr_request))
    figures["pieceworks_incremental"] = {
        "seconds": seconds, "bytes_read": incr.bytes_read,
        "read_fraction": incr.bytes_read / size, "parent": incr.parent,
    }  # fmt: skip

    want = image_sha256(ioctx, IMAGE)
    other_io = cluster.open_ioctx("rbd2")
    again, streamed = replicate_after_change(source, target, other_io, want, figures)

    seconds, back = timed(
        lambda: restore(source, store, RestoreRequest(incr.backup_id, "bench-back"))
    )
    figures["pieceworks_restore"] = {"seconds": seconds, "strategy": back.strategy}
    figures["restore_equal"] = image_sha256(ioctx, "bench-back") == want
    figures["restore_allocated_bytes"] = sum(
        e.length for e in driver.allocated_extents(VolumeRef("bench-back"))
    )
    driver.delete_volume("bench-back")

    seconds, _ = timed(lambda: bare_import_restore(conf, pool, "bench-bare", blocks, root / "bare"))
    figures["bare_import_restore"] = {"seconds": seconds}
    driver.delete_volume("bench-bare")
    ioctx.close()
    other_io.close()
    cluster.shutdown()

    notes = {
        "bare_export_backup": f"{size / MiB:.0f} MiB read",
        "pieceworks_full": f"{full.bytes_read / MiB:.0f} MiB read",
        "pieceworks_incremental": (
            f"{incr.bytes_read / MiB:.0f} MiB read ({100 * incr.bytes_read / size:.2f}%)"
        ),
        "native_first": f"{first.bytes_sent / MiB:.0f} MiB sent",
        "native_incremental": f"{again.bytes_sent / MiB:.0f} MiB sent",
        "stream_replication": f"{streamed.bytes_through_manager / MiB:.0f} MiB via the manager",
    }
    print(table(figures, notes, size, len(changed)))
    ok = (
        figures["restore_equal"]
        and figures["replicas_equal"]
        and figures["pieceworks_incremental"]["read_fraction"] <= 0.02
    )
    print(json.dumps(figures, indent=2))
    if out:
        out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
