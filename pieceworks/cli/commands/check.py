"""``pieceworks check``: the whole store is consistent, optionally reading a share of the data.

The check (`common_algorithms.inspect.check`) reads every manifest, makes
sure every chunk they reference is present with its recorded size, and with
``--read-data-subset`` fetches that share of the chunks and checks each
against its sha256. The summary is printed whether it passes or not.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms.inspect import CheckReport, Subset

__all__ = ["add_arguments", "report", "run_check"]

DESCRIPTION = """\
Check the whole store: every manifest can be read and passes its checksum,
and every chunk a manifest references is present with the size the manifest
records. With --read-data-subset, also read that share of the distinct chunks
and check each against its sha256: N/M reads the chunks whose digest's first
byte is N-1 modulo M (restic's meaning: 1/7 to 7/7 on seven nights read
everything once), P% a random P percent, 100% all of them.

The summary is printed even when problems are found; every problem names
the object and the backups concerned. Exit 1 if a chunk is missing, has the
wrong size, fails its hash or cannot be read, 4 if a manifest cannot be read."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT, ExitCode.INTERRUPTED)


def _subset(text: str) -> Subset:
    """`parse_subset` as an argparse type: a bad value is a usage error naming the option.

    Only called when the option is given, so the check's modules are imported then only.
    """
    from pieceworks.common_algorithms.inspect import parse_subset  # noqa: PLC0415

    try:
        return parse_subset(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``check``."""
    parser.describe(DESCRIPTION, CODES)
    parser.add_argument(
        "--read-data-subset",
        dest="subset",
        metavar="N/M|P%",
        type=_subset,
        help="also read and hash this share of the chunks: N/M (e.g. 2/7) or P%% (e.g. 10%%)",
    )


def report(r: CheckReport, store: str) -> str:
    """The summary: what was checked, then every problem."""
    from pieceworks.cli.output import human_bytes  # noqa: PLC0415

    lines = [
        f"store '{store}': {r.manifests} manifests ({r.manifests_unreadable} unreadable),"
        f" {r.chunks_referenced} chunks referenced, {r.chunks_present} present",
    ]
    if r.subset is not None:
        lines.append(
            f"read data subset {r.subset}: {r.chunks_read} chunks"
            f" ({human_bytes(r.bytes_read)}) read and hashed"
        )
    if r.objects_unreferenced:
        lines.append(
            f"{r.objects_unreferenced} chunk objects no backup references"
            " (`pieceworks prune` removes them)"
        )
    if r.ok:
        lines.append("no problems found")
    else:
        lines.append(f"{len(r.problems)} problem(s):")
        lines += [
            f"  {p.kind}: {p.key}: {p.detail} (backups: {', '.join(p.backup_ids)})"
            for p in r.problems
        ]
    return "\n".join(lines)


def run_check(args: argparse.Namespace, ctx: Context) -> int:
    """Check the store; the summary always, then exit 0, 1 (chunks) or 4 (manifests)."""
    from pieceworks.common_algorithms import ProgressEvent  # noqa: PLC0415
    from pieceworks.common_algorithms.inspect import check_store  # noqa: PLC0415

    subset: Subset | None = args.subset
    store = ctx.store()
    with ctx.progress("check: read data") as progress:
        try:
            result = check_store(
                store.objects,
                subset=subset,
                progress=lambda done, total: progress(
                    ProgressEvent("check", done / total if total else 1.0, done, total)
                ),
            )
        except KeyboardInterrupt:
            progress.close()
            raise CliError(
                "interrupted: the check did not finish; nothing was changed",
                ExitCode.INTERRUPTED,
            ) from None
    ctx.out.data({"store": store.name, **result.to_dict()})
    ctx.out.result(report(result, store.name))
    if result.manifests_unreadable:
        ctx.out.explain(
            "unreadable-manifests",
            f"{result.manifests_unreadable} manifest(s) cannot be read",
            "the summary's problems name them",
        )
        return ExitCode.CORRUPT
    if result.ok:
        return ExitCode.OK
    ctx.out.explain(
        "check-problems",
        f"store '{store.name}': {len(result.problems)} problem(s)",
        "the summary's problems name each chunk and the backups that use it",
    )
    return ExitCode.FAILED
