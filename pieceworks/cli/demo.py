"""``pieceworks demo``: the whole job on embedded defaults, in one command.

In a fresh directory (a temporary one, or ``--dir``) laid out like
``$PIECEWORKS_HOME`` (file-driver volumes, a POSIX store, TaskFlow flows
run in process without persistence), the demo:

1. creates a volume of mixed content (random, zeros, log-like text) through
   the driver's stream-in capability;
2. shows the backup plan for the volume in use;
3. backs it up while in use (snapshot-stream);
4. changes a few percent of it;
5. makes an incremental backup (only the changed chunks are uploaded);
6. restores that backup into a new volume and verifies it;
7. prints a summary table and checks that the restored volume's sha256 is
   the changed volume's.

Everything goes through the same discovery, planning and TaskFlow flows as
the other commands; nothing here knows which driver it is talking to.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pieceworks.cli.config import Config, defaults
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.options import parse_size
from pieceworks.cli.output import human_bytes, mb_per_s, table
from pieceworks.protocols import IStreamIn, IStreamOut, VolumeRef
from pieceworks.protocols.chunks import is_zero

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms import Backend

__all__ = [
    "BLOCK",
    "Step",
    "add_arguments",
    "demo_context",
    "make_block",
    "run_demo",
    "run_demo_command",
]

#: The unit the sample volume is built and changed in (the default chunk size), bytes.
BLOCK = 4 * 1024 * 1024

DESCRIPTION = """\
Run the whole job on embedded defaults in a fresh temporary directory (or
--dir): create a sample volume of random data, zeros and text, show the plan,
back it up while in use, change a few percent, back it up incrementally,
restore it into a new volume, verify, and print a summary. Your configuration
is not used. Exit 1 if the restored volume differs."""


def add_arguments(parser: CommandParser) -> None:
    """The options of ``demo`` (it reads no configuration)."""
    parser.describe(
        DESCRIPTION, (ExitCode.FAILED, ExitCode.INTERRUPTED), needs_config=False, runs_flow=True
    )
    parser.add_argument("--dir", metavar="DIR", help="work in DIR (kept) instead of a temp dir")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=256 * 1024 * 1024,
        metavar="SIZE",
        help="sample volume size (default 256MiB)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")


VOLUME = "demo-vol"
RESTORED = "demo-vol-restored"
CHANGED_FRACTION = 0.03

_LOG_LINE = (
    "{n:09d} 2025-01-{d:02d}T{h:02d}:{m:02d}:{s:02d}Z INFO volume-service req-{r}"
    " attach volume={v} host=compute-{c:02d} ok\n"
)


@functools.cache
def _base_text() -> bytes:
    """4 MiB of log-like text, made once per process."""
    rnd = os.urandom(8192).hex()
    lines = []
    for n in range(BLOCK // 96 + 1):
        lines.append(
            _LOG_LINE.format(
                n=n,
                d=n % 28 + 1,
                h=n % 24,
                m=n % 60,
                s=(n * 7) % 60,
                r=rnd[(n * 12) % 16000 : (n * 12) % 16000 + 12],
                v=f"vol-{(n * 31) % 977:04d}",
                c=n % 40,
            )
        )
    return "".join(lines).encode()[:BLOCK]


def _log_text(seed: int) -> bytes:
    """4 MiB of log-like text, distinct for each `seed` (a rotation of one base text)."""
    base = _base_text()
    cut = (seed * 7919 * 96) % len(base)
    header = f"--- log segment {seed} ---\n".encode()
    return (header + base[cut:] + base[:cut])[:BLOCK]


def make_block(index: int, salt: int = 0) -> bytes | None:
    """Block `index` of the sample volume: random, zeros (None), random or text.

    `salt` makes a different block of the same kind (how the demo changes one).
    """
    kind = index % 4
    if kind == 1:
        return None
    if kind == 3:
        return _log_text(index * 10 + salt)
    return os.urandom(BLOCK)


@dataclass(frozen=True)
class Step:
    """One line of the summary table."""

    name: str
    strategy: str
    size: int
    moved: int  # bytes read (backup, verify) or written (restore)
    stored: int | None  # bytes added to the store (backups)
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """The JSON form in ``demo --json``."""
        return {
            "step": self.name,
            "strategy": self.strategy,
            "size": self.size,
            "bytes_moved": self.moved,
            "bytes_stored": self.stored,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(mb_per_s(self.size, self.seconds), 1),
        }


def demo_context(ctx: Context, directory: Path) -> Context:
    """A context on the built-in defaults under `directory` (user configuration ignored)."""
    from pieceworks.cli.context import Context  # noqa: PLC0415 (brings in the registry)

    backends, stores, persistence = defaults(directory)
    config = Config(None, directory, backends, stores, persistence)
    return Context(ctx.out, ctx.env, config=config)


def _write_volume(
    driver: IStreamIn, volume_id: str, size: int, block: Callable[[int], bytes | None]
) -> None:
    writer = driver.open_write(VolumeRef(volume_id), size)
    try:
        for i, offset in enumerate(range(0, size, BLOCK)):
            data = block(i)
            if data is not None:  # zeros stay holes
                writer.write_at(offset, data[: size - offset])
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def _change_volume(backend: Backend, volume_id: str, size: int) -> tuple[str, int]:
    """Rewrite ~3% of the volume's blocks; return its new sha256 and the bytes changed."""
    blocks = (size + BLOCK - 1) // BLOCK
    count = max(1, round(blocks * CHANGED_FRACTION))
    chosen = {int(i * blocks / count) + 1 for i in range(count)}
    chosen = {min(i, blocks - 1) for i in chosen}
    reader_side = cast(IStreamOut, backend.driver)
    writer_side = cast(IStreamIn, backend.driver)
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK)
    changed = 0
    with closing(reader_side.open_read(VolumeRef(volume_id))) as reader:
        writer = writer_side.open_write(VolumeRef(volume_id), size)
        try:
            for i, offset in enumerate(range(0, size, BLOCK)):
                n = min(BLOCK, size - offset)
                data: bytes | memoryview
                if i in chosen:
                    data = (make_block(i, salt=1) or os.urandom(BLOCK))[:n]
                    changed += n
                else:
                    got = reader.readinto_at(offset, memoryview(buffer)[:n])
                    data = memoryview(buffer)[:got]
                digest.update(data)
                if not is_zero(data):
                    writer.write_at(offset, data)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
    return digest.hexdigest(), changed


def _sha256(backend: Backend, volume_id: str) -> str:
    reader_side = cast(IStreamOut, backend.driver)
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK)
    with closing(reader_side.open_read(VolumeRef(volume_id))) as reader:
        for offset in range(0, reader.size, BLOCK):
            n = reader.readinto_at(offset, memoryview(buffer))
            digest.update(memoryview(buffer)[:n])
    return digest.hexdigest()


def run_demo(ctx: Context, directory: Path | None, size: int, keep: bool) -> int:
    """Run the demo (see the module docstring); exit 0 if the restored volume matches."""
    made = directory is None
    where = Path(tempfile.mkdtemp(prefix="pieceworks-demo-")) if directory is None else directory
    where = where.absolute()
    if not made and (where / "volumes" / VOLUME).exists():
        raise CliError(
            f"{where} already holds a demo (volumes/{VOLUME}); use another --dir",
            ExitCode.USAGE,
        )
    try:
        return _run(demo_context(ctx, where), where, size)
    finally:
        if made and not keep:
            shutil.rmtree(where, ignore_errors=True)
            ctx.out.text(f"\n(removed {where}; --keep or --dir DIR keeps the demo's files)")
        else:
            ctx.out.text(f"\nthe demo's files are in {where}; look around with:")
            ctx.out.text(f"  PIECEWORKS_HOME={where} pieceworks list")


#: Peak disk use of a demo, in volume sizes: the volume, its temporary snapshot
#: (a full copy without reflink), the backups and the restored volume.
SPACE_FACTOR = 3


def run_demo_command(args: argparse.Namespace, ctx: Context) -> int:
    """``pieceworks demo [--dir DIR] [--size SIZE] [--keep]``.

    Usage errors (exit 2), before anything is written: a --size below 4 MiB
    or larger than the file system can hold (`SPACE_FACTOR` times it must be
    free), a --dir that is empty, not a directory, or cannot be made.
    """
    if args.size < BLOCK:
        raise CliError(f"--size must be at least {BLOCK} bytes (4MiB)", ExitCode.USAGE)
    if args.dir is not None and not args.dir.strip():
        raise CliError("--dir must not be empty or blank", ExitCode.USAGE)
    _check_space(Path(args.dir or tempfile.gettempdir()), args.size)
    directory = None if args.dir is None else _demo_dir(args.dir)
    return run_demo(ctx, directory, args.size, args.keep)


def _demo_dir(text: str) -> Path:
    """--dir as a directory that exists (made if missing); `CliError` (usage) if it cannot."""
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CliError(f"--dir {text}: exists and is not a directory", ExitCode.USAGE) from None
    except OSError as exc:
        raise CliError(f"--dir {text}: cannot make it: {exc.strerror}", ExitCode.USAGE) from None
    return path


def _check_space(directory: Path, size: int) -> None:
    """Refuse a demo whose files would not fit in `directory`'s file system."""
    needed = SPACE_FACTOR * size
    existing = directory.absolute()
    while not existing.is_dir() and existing != existing.parent:  # --dir made later
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise CliError(
            f"--size {human_bytes(size)} needs about {human_bytes(needed)} free in {directory}"
            f" (the volume, a snapshot, the backups and the restored copy); it has"
            f" {human_bytes(free)}: choose a smaller --size or another --dir",
            ExitCode.USAGE,
        )


def _run(ctx: Context, where: Path, size: int) -> int:
    from pieceworks.common_algorithms import (  # noqa: PLC0415 (TaskFlow: only when it runs)
        BackupRequest,
        RestoreRequest,
        backup,
        plan_backup,
        restore,
        verify,
    )

    out = ctx.out
    backend, store = ctx.backend(), ctx.store(create=True)
    options = ctx.engine_options()
    out.text(
        f"demo in {where} (backend '{backend.name}': driver file, store '{store.name}': posix)"
    )
    if not (backend.provides(IStreamIn) and backend.provides(IStreamOut)):
        raise CliError(f"backend '{backend.name}' cannot stream volumes in and out")
    writer_side = cast(IStreamIn, backend.driver)

    started = time.monotonic()
    _write_volume(writer_side, VOLUME, size, make_block)
    out.text(
        f"\n1. created volume '{VOLUME}': {human_bytes(size)} of random data, zeros and log"
        f" text in 4 MiB blocks ({time.monotonic() - started:.2f} s)"
    )

    full_request = BackupRequest(VOLUME, in_use=True)
    out.text("\n2. the plan for backing it up while it is in use:")
    out.text(plan_backup(backend, store, full_request).format_text())

    out.text("\n3. full backup, volume in use:")
    with ctx.progress("full backup") as progress:
        full = backup(backend, store, full_request, options=options, progress=progress)
    out.text(
        f"   {full.backup_id}: {full.strategy}, {human_bytes(full.bytes_stored)} stored,"
        f" {full.seconds:.2f} s"
    )

    started = time.monotonic()
    changed_sha, changed = _change_volume(backend, VOLUME, size)
    out.text(
        f"\n4. changed {human_bytes(changed)} of the volume ({changed / size:.1%})"
        f" in {time.monotonic() - started:.2f} s"
    )

    out.text("\n5. incremental backup, volume in use:")
    incr_request = BackupRequest(VOLUME, in_use=True, incremental=True)
    with ctx.progress("incremental backup") as progress:
        incr = backup(backend, store, incr_request, options=options, progress=progress)
    out.text(
        f"   {incr.backup_id}: {incr.strategy}, parent {incr.parent},"
        f" {human_bytes(incr.bytes_stored)} stored, {incr.seconds:.2f} s"
    )

    out.text(f"\n6. restore {incr.backup_id} into a new volume '{RESTORED}', then verify:")
    with ctx.progress("restore") as progress:
        back = restore(
            backend,
            store,
            RestoreRequest(incr.backup_id, RESTORED, overwrite=True),  # the demo's own volume
            options=options,
            progress=progress,
        )
    out.text(
        f"   restored: {back.strategy}, {human_bytes(back.bytes_written)} written,"
        f" {back.seconds:.2f} s"
    )
    started = time.monotonic()
    with ctx.progress("verify") as progress:
        checked = verify(store, incr.backup_id, options=options, progress=progress)
    verify_seconds = time.monotonic() - started
    out.text(
        f"   verified: {checked.chunks_checked} chunks, "
        + ("all intact" if checked.ok else f"{len(checked.problems)} problem(s)")
        + f", {verify_seconds:.2f} s"
    )
    restored_sha = _sha256(backend, RESTORED)
    match = restored_sha == changed_sha

    steps = [
        Step(
            "full backup",
            full.strategy,
            full.size,
            full.bytes_read,
            full.bytes_stored,
            full.seconds,
        ),
        Step(
            "incremental backup",
            incr.strategy,
            incr.size,
            incr.bytes_read,
            incr.bytes_stored,
            incr.seconds,
        ),
        Step("restore", back.strategy, back.size, back.bytes_written, None, back.seconds),
        Step(
            "verify",
            "ok" if checked.ok else "PROBLEMS",
            back.size,
            checked.bytes_checked,
            None,
            verify_seconds,
        ),
    ]
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415

    # volume, restored_volume, changed_bytes, backups: deprecated old names
    out.data(
        with_deprecated(
            "demo",
            {
                "dir": str(where),
                "volume_id": VOLUME,
                "restored_volume_id": RESTORED,
                "size": size,
                "bytes_changed": changed,
                "backup_ids": [full.backup_id, incr.backup_id],
                "steps": [s.to_dict() for s in steps],
                "verify_ok": checked.ok,
                "sha256_changed": changed_sha,
                "sha256_restored": restored_sha,
                "sha256_match": match,
            },
        )
    )
    out.text("\nsummary:")
    out.result(
        table(
            ["step", "strategy", "volume", "read/written", "stored", "seconds", "MB/s"],
            [
                [
                    s.name,
                    s.strategy,
                    human_bytes(s.size),
                    human_bytes(s.moved),
                    "-" if s.stored is None else human_bytes(s.stored),
                    f"{s.seconds:.2f}",
                    f"{mb_per_s(s.size, s.seconds):.1f}",
                ]
                for s in steps
            ],
            right=(2, 3, 4, 5, 6),
        )
    )
    out.text(
        "(seconds: the whole step, temporary snapshot and TaskFlow flow included;"
        " MB/s: volume size / seconds)"
    )
    verdict = "equals" if match else "DIFFERS FROM"
    out.result(
        f"restored volume sha256 {restored_sha[:16]}... {verdict} the changed volume's"
        f" {changed_sha[:16]}..."
    )
    if not checked.ok:
        raise CliError(f"verify found {len(checked.problems)} problem(s) in {incr.backup_id}")
    if not match:
        raise CliError("the restored volume differs from the changed volume")
    return ExitCode.OK
