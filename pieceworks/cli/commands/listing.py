"""``pieceworks list`` (backups in the store) and ``pieceworks volumes`` (of the backend)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from contextlib import closing
from typing import TYPE_CHECKING, cast

from pieceworks.cli.commands._select import (
    add_filter_options,
    label_filters,
    load_backups,
    select,
)
from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.options import BACKUP_STRATEGIES
from pieceworks.cli.output import human_bytes, iso_time, table
from pieceworks.common_algorithms.format.manifest import Manifest, UnreadableManifest
from pieceworks.protocols import IStreamOut, PieceworksError, VolumeNotFound, VolumeRef

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser

__all__ = [
    "add_list_arguments",
    "add_volumes_arguments",
    "backup_row",
    "format_labels",
    "run_list",
    "run_volumes",
    "unreadable_row",
]

LIST_DESCRIPTION = """\
List the backups in the store, oldest first: id, volume, backend, creation
time (UTC), volume size, bytes it added to the store, strategy, parent and
labels. --volume, --label, --since, --until and --strategy keep only the
backups matching all of them. A manifest that cannot be read is listed as
UNREADABLE, its reason is printed, and the exit code is 4; every readable
backup is still listed."""


def add_list_arguments(parser: CommandParser) -> None:
    """The filters of ``list``."""
    parser.describe(LIST_DESCRIPTION, (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT))
    add_filter_options(parser)
    parser.add_argument(
        "--strategy",
        dest="strategies",
        choices=BACKUP_STRATEGIES,
        action="append",
        help="only backups made by this strategy (repeatable)",
    )


def add_volumes_arguments(parser: CommandParser) -> None:
    """``volumes`` has only the common options."""
    parser.describe(
        "List the volumes of the backend and their sizes.", (ExitCode.FAILED, ExitCode.NOT_FOUND)
    )


def _stored(m: Manifest) -> int:
    """Bytes the backup added to the store (all it references, if not recorded)."""
    stored = m.stats.get("bytes_stored")
    return stored if isinstance(stored, int) else m.stored_bytes


def backup_row(m: Manifest) -> dict[str, object]:
    """One backup as ``list --json`` prints it.

    ``bytes_stored`` is what this backup added to the store (its new
    chunks); ``bytes_referenced`` all the stored bytes it refers to,
    including chunks shared with other backups. ``created`` is a Unix time,
    ``parent_id`` the parent backup's id (``parent``: its deprecated old name).
    """
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415

    return with_deprecated(
        "list",
        {
            "backup_id": m.backup_id,
            "volume_id": m.volume_id,
            "backend": m.backend,
            "created": m.created,
            "size": m.size,
            "bytes_stored": _stored(m),
            "bytes_referenced": m.stored_bytes,
            "strategy": m.strategy,
            "incremental": m.incremental,
            "parent_id": m.parent,
            "labels": dict(m.labels),
        },
    )


def format_labels(labels: Mapping[str, str]) -> str:
    """``k=v,k2=v2`` (sorted), or ``-``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def unreadable_row(bad: UnreadableManifest) -> dict[str, object]:
    """A manifest that cannot be read, as ``list --json`` prints it (``unreadable`` says why)."""
    return {"backup_id": bad.backup_id, "key": bad.key, "unreadable": bad.reason}


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """List the backups in the store, oldest first; exit 4 if a manifest cannot be read.

    Every readable backup is listed; each manifest that cannot be read is
    listed too, marked UNREADABLE (its volume is unknown, so ``--volume``
    does not hide it), and named in a warning with the reason.
    """
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise CliError(
            f"--since ({iso_time(args.since)}) is not before --until ({iso_time(args.until)}): no"
            " backup can match (--since is inclusive, --until exclusive)",
            ExitCode.USAGE,
        )
    store = ctx.store()
    found = load_backups(ctx, store.objects)
    manifests = select(
        found.manifests,
        volumes=args.volumes,
        labels=label_filters(args),
        since=args.since,
        until=args.until,
        strategies=args.strategies,
    )
    rows = [backup_row(m) for m in manifests] + [unreadable_row(u) for u in found.unreadable]
    ctx.out.data(rows, message_type="backup")
    if manifests or found.unreadable:
        headers = ["id", "volume", "backend", "created", "size", "stored", "strategy", "parent"]
        with_labels = any(m.labels for m in manifests)
        ctx.out.result(
            table(
                headers + (["labels"] if with_labels else []),
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
                    + ([format_labels(m.labels)] if with_labels else [])
                    for m in manifests
                ]
                + [
                    [u.backup_id, "?", "?", "?", "?", "?", "UNREADABLE", "-"]
                    + (["-"] if with_labels else [])
                    for u in found.unreadable
                ],
                right=(4, 5),
            )
        )
    elif found.manifests:
        ctx.out.note(f"no backups in store '{store.name}' match the filters")
    else:
        ctx.out.note(f"no backups in store '{store.name}'")
    if found.unreadable:
        raise CliError(
            f"{len(found.unreadable)} manifest(s) cannot be read:"
            f" {', '.join(u.backup_id for u in found.unreadable)} (marked UNREADABLE above)",
            ExitCode.CORRUPT,
            reference="unreadable-manifests",
        )
    return ExitCode.OK


def run_volumes(args: argparse.Namespace, ctx: Context) -> int:
    """List the backend's volumes (for drivers with a ``list_volumes()`` helper).

    A size comes from stream-out, else from a ``volume_sizes()`` helper
    (the remote driver's, which streams nothing); else it is unknown (``?``).
    A volume that cannot be opened (a qcow2 image with a backing file, a
    damaged one) harms only itself: it is listed as ``UNREADABLE`` with the
    reason (``--json``: a row ``{"volume_id", "size": null, "unreadable"}``),
    every other volume is listed, and the exit code is 1. A volume removed
    meanwhile is left out.
    """
    backend = ctx.backend()
    ids = ctx.volumes(backend)
    if ids is None:
        raise CliError(f"backend '{backend.name}' cannot list its volumes")
    sized = getattr(backend.driver, "volume_sizes", None)
    known: dict[str, int] = {}
    if not backend.provides(IStreamOut) and callable(sized):
        known = dict(sized())
    rows: list[dict[str, object]] = []
    for volume_id in ids:
        row: dict[str, object] = {"volume_id": volume_id, "size": known.get(volume_id)}
        if backend.provides(IStreamOut):
            streams = cast(IStreamOut, backend.driver)
            try:
                with closing(streams.open_read(VolumeRef(volume_id))) as reader:
                    row["size"] = reader.size
            except VolumeNotFound:
                continue  # removed since it was listed
            except PieceworksError as exc:
                row["unreadable"] = str(exc)
        rows.append(row)
    ctx.out.data(rows, message_type="volume")
    bad = [r for r in rows if "unreadable" in r]
    if rows:
        ctx.out.result(
            table(
                ["volume", "size"],
                [[str(r["volume_id"]), _volume_size(r)] for r in rows],
                right=(1,),
            )
        )
    else:
        ctx.out.note(f"no volumes on backend '{backend.name}'")
    if bad:
        reasons = "; ".join(f"{r['volume_id']}: {r['unreadable']}" for r in bad)
        raise CliError(
            f"{len(bad)} volume(s) of backend '{backend.name}' cannot be opened (marked"
            f" UNREADABLE above): {reasons}"
        )
    return ExitCode.OK


def _volume_size(row: Mapping[str, object]) -> str:
    """The size column of one volume row: its size, ``?`` or ``UNREADABLE``."""
    if "unreadable" in row:
        return "UNREADABLE"
    size = row["size"]
    return "?" if not isinstance(size, int) else human_bytes(size)
