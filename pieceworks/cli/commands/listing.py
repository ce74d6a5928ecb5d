"""``pieceworks list`` (backups in the store) and ``pieceworks volumes`` (of the backend)."""

from __future__ import annotations

import argparse
from contextlib import closing
from typing import cast

from pieceworks.cli.context import Context
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.output import human_bytes, iso_time, table
from pieceworks.common_algorithms.manifest import Manifest, UnreadableManifest, scan_manifests
from pieceworks.protocols import IStreamOut, VolumeRef

__all__ = ["backup_row", "run_list", "run_volumes", "unreadable_row"]


def _stored(m: Manifest) -> int:
    """Bytes the backup added to the store (all it references, if not recorded)."""
    stored = m.stats.get("bytes_stored")
    return stored if isinstance(stored, int) else m.stored_bytes


def backup_row(m: Manifest) -> dict[str, object]:
    """One backup as ``list --json`` prints it.

    ``stored_bytes`` is what this backup added to the store (its new
    chunks); ``referenced_bytes`` all the stored bytes it refers to,
    including chunks shared with other backups.
    """
    return {
        "id": m.backup_id,
        "volume": m.volume_id,
        "backend": m.backend,
        "created": iso_time(m.created),
        "size": m.size,
        "stored_bytes": _stored(m),
        "referenced_bytes": m.stored_bytes,
        "strategy": m.strategy,
        "incremental": m.incremental,
        "parent": m.parent,
    }


def unreadable_row(bad: UnreadableManifest) -> dict[str, object]:
    """A manifest that cannot be read, as ``list --json`` prints it (``unreadable`` says why)."""
    return {"id": bad.backup_id, "key": bad.key, "unreadable": bad.reason}


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """List the backups in the store, oldest first; exit 4 if a manifest cannot be read.

    Every readable backup is listed; each manifest that cannot be read is
    listed too, marked UNREADABLE (its volume is unknown, so ``--volume``
    does not hide it), and named in a warning with the reason.
    """
    store = ctx.store()
    scan = scan_manifests(store.objects)
    manifests = list(scan.manifests)
    if args.volume:
        manifests = [m for m in manifests if m.volume_id == args.volume]
    ctx.out.data([backup_row(m) for m in manifests] + [unreadable_row(u) for u in scan.unreadable])
    for bad in scan.unreadable:
        ctx.out.warn(bad.reason)
    if manifests or scan.unreadable:
        ctx.out.result(
            table(
                ["id", "volume", "backend", "created", "size", "stored", "strategy", "parent"],
                [
                    [
                        m.backup_id,
                        m.volume_id,
                        m.backend,
                        iso_time(m.created),
                        human_bytes(m.size),
                        human_bytes(_stored(m)),
                        m.strategy,
                        m.parent or "-",
                    ]
                    for m in manifests
                ]
                + [
                    [u.backup_id, "?", "?", "?", "?", "?", "UNREADABLE", "-"]
                    for u in scan.unreadable
                ],
                right=(4, 5),
            )
        )
    else:
        ctx.out.note(f"no backups in store '{store.name}'")
    if scan.unreadable:
        raise CliError(
            f"{len(scan.unreadable)} manifest(s) cannot be read:"
            f" {', '.join(u.backup_id for u in scan.unreadable)} (marked UNREADABLE above)",
            ExitCode.CORRUPT,
        )
    return ExitCode.OK


def run_volumes(args: argparse.Namespace, ctx: Context) -> int:
    """List the backend's volumes (for drivers with a ``list_volumes()`` helper)."""
    backend = ctx.backend()
    ids = ctx.volumes(backend)
    if ids is None:
        raise CliError(f"backend '{backend.name}' cannot list its volumes")
    sizes: list[tuple[str, int | None]] = []
    for volume_id in ids:
        size: int | None = None
        if backend.provides(IStreamOut):
            streams = cast(IStreamOut, backend.driver)
            with closing(streams.open_read(VolumeRef(volume_id))) as reader:
                size = reader.size
        sizes.append((volume_id, size))
    ctx.out.data([{"id": v, "size": n} for v, n in sizes])
    if sizes:
        ctx.out.result(
            table(
                ["volume", "size"],
                [[v, "?" if n is None else human_bytes(n)] for v, n in sizes],
                right=(1,),
            )
        )
    else:
        ctx.out.note(f"no volumes on backend '{backend.name}'")
    return ExitCode.OK
