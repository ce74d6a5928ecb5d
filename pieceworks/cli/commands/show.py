"""``pieceworks show BACKUP_ID``: everything one backup's manifest says.

Volume, backend, creation time, size, the strategy that made it and why
(the plan recorded at backup time, for backups made by this version on),
the strategies that failed first, codecs, chunks, bytes stored, parent,
labels and the enhancers of the strategy that ran. Only the manifest is
read; ``verify`` checks the chunks.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.cli.ids import id_type

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.common_algorithms.format.manifest import Manifest

__all__ = ["add_arguments", "describe", "run_show"]

DESCRIPTION = """\
Show what the manifest of BACKUP_ID records: volume, backend, creation time,
size, the strategy that made it and the reasons of the plan, the strategies
that failed before it, the enhancers it used, codecs, chunks, bytes stored,
parent and labels. Nothing but the manifest is read (`pieceworks verify`
checks the chunks). A damaged manifest exits 4."""
CODES = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT)

#: Manifest stats shown in their own fields rather than under ``stats``.
_OWN_STATS = (
    "plan",
    "reason",
    "enhancers",
    "failed_strategies",
    "fallbacks",
    "forced",
    "warnings",
)
_GUARD_STATS = (
    "guard_sample_percent",
    "guard_chunks_checked",
    "guard_bytes_reread",
    "guard_max_chunks",
    "guard_chunks_wanted",
    "guard_lies",
)


def add_arguments(parser: CommandParser) -> None:
    """The arguments of ``show``."""
    parser.describe(DESCRIPTION, CODES)
    parser.add_argument("backup_id", metavar="BACKUP_ID", type=id_type("backup id"))


def _plan(m: Manifest) -> list[dict[str, Any]]:
    raw = m.stats.get("plan")
    try:
        rows = json.loads(raw) if isinstance(raw, str) else []
        return [{"name": str(n), "eligible": bool(e), "reason": str(r)} for n, e, r in rows]
    except (ValueError, TypeError):
        return []


def _failed(m: Manifest) -> list[dict[str, str]]:
    raw = m.stats.get("failed_strategies")
    if isinstance(raw, str):
        try:
            return [
                {"strategy": str(f["strategy"]), "error": str(f["error"])} for f in json.loads(raw)
            ]
        except (ValueError, TypeError, KeyError):
            pass
    text = m.stats.get("fallbacks")
    if not isinstance(text, str) or not text:
        return []
    out = []
    for part in text.split("; "):
        strategy, _, error = part.partition(": ")
        out.append({"strategy": strategy, "error": error})
    return out


def _warnings(m: Manifest) -> list[str]:
    raw = m.stats.get("warnings")
    try:
        found = json.loads(raw) if isinstance(raw, str) else []
    except ValueError:
        return [str(raw)]
    return [str(w) for w in found] if isinstance(found, list) else [str(found)]


def describe(m: Manifest, store: str) -> dict[str, Any]:
    """One backup as ``show --json`` prints it.

    ``strategies`` are the plan's strategies recorded at backup time, rows
    ``{name, eligible, reason}`` as in ``backup --json``'s ``plan.strategies``;
    ``parent_id`` the parent backup's id. ``plan`` (the same list) and
    ``parent`` are their deprecated old names (`pieceworks.common_algorithms.json_fields`).
    """
    from pieceworks.common_algorithms.json_fields import with_deprecated  # noqa: PLC0415

    stored = m.stats.get("bytes_stored")
    enhancers = m.stats.get("enhancers")
    slots = -(-m.size // m.chunk_size) if m.size else 0
    doc = {
        "backup_id": m.backup_id,
        "volume_id": m.volume_id,
        "backend": m.backend,
        "store": store,
        "created": m.created,
        "size": m.size,
        "strategy": m.strategy,
        "reason": m.stats.get("reason") if isinstance(m.stats.get("reason"), str) else None,
        "strategies": _plan(m),
        "failed_strategies": _failed(m),
        "forced": "forced" in m.stats,
        "enhancers": [e for e in enhancers.split(",") if e] if isinstance(enhancers, str) else [],
        "codec": m.codec,
        "codecs": dict(sorted(Counter(c.codec for c in m.chunks).items())),
        "chunk_size": m.chunk_size,
        "chunks_total": len(m.chunks),
        "chunks_unique": len(m.digests()),
        "holes": max(0, slots - len(m.chunks)),
        "bytes_data": m.data_bytes,
        "bytes_stored": stored if isinstance(stored, int) else None,
        "bytes_referenced": m.stored_bytes,
        "incremental": m.incremental,
        "parent_id": m.parent,
        "change_token": m.change_token,
        "labels": dict(m.labels),
        "enhancers_used": {k: {"bytes_skipped": n} for k, n in m.enhancers_used.items()},
        "guard": _guard(m),
        "warnings": _warnings(m),
        "stats": {k: v for k, v in m.stats.items() if k not in (*_OWN_STATS, *_GUARD_STATS)},
    }
    return with_deprecated("show", doc)


def _guard(m: Manifest) -> dict[str, Any] | None:
    """The sampling guard's figures the manifest records (None: not run or older)."""
    s = m.stats
    if "guard_chunks_checked" not in s:
        return None
    try:
        lies = json.loads(str(s.get("guard_lies", "[]")))
        cap, wanted = s.get("guard_max_chunks"), s.get("guard_chunks_wanted")
        out: dict[str, Any] = {
            "sample_percent": float(s.get("guard_sample_percent", 0)),
            "chunks_checked": int(s["guard_chunks_checked"]),
            "bytes_reread": int(s.get("guard_bytes_reread", 0)),
            "lies": lies if isinstance(lies, list) else [],
            "max_chunks": None if cap is None else int(cap),
            "capped": wanted is not None,
        }
        if wanted is not None:
            out["chunks_wanted"] = int(wanted)
        return out
    except (ValueError, TypeError):
        return None


def _text(d: dict[str, Any]) -> str:
    from pieceworks.cli.output import human_bytes, iso_time  # noqa: PLC0415

    stored = "unknown" if d["bytes_stored"] is None else f"{human_bytes(d['bytes_stored'])} new"
    lines = [
        f"backup {d['backup_id']} of volume '{d['volume_id']}' (backend '{d['backend']}'),"
        f" store '{d['store']}'",
        f"  created     {iso_time(d['created'])}",
        f"  size        {human_bytes(d['size'])} ({human_bytes(d['bytes_data'])} of data,"
        f" {d['holes']} holes)",
        f"  strategy    {d['strategy']}"
        + (f": {d['reason']}" if d["reason"] else "")
        + (" (forced: read while in use)" if d["forced"] else ""),
        f"  enhancers   {', '.join(d['enhancers']) or '-'}",
    ]
    for i, s in enumerate(d["strategies"]):
        mark = "->" if s["name"] == d["strategy"] else ("ok" if s["eligible"] else "--")
        lines.append(f"  {'plan' if i == 0 else '':<10}  {mark} {s['name']}: {s['reason']}")
    lines += [f"  failed      {f['strategy']}: {f['error']}" for f in d["failed_strategies"]]
    codecs = ", ".join(f"{c} {n}" for c, n in d["codecs"].items())
    by_codec = f"chunks by codec: {codecs}" if codecs else "no chunk stored"  # not codec none
    lines += [
        f"  codec       {d['codec']} ({by_codec})",
        f"  chunks      {d['chunks_total']} ({d['chunks_unique']} distinct),"
        f" {human_bytes(d['chunk_size'])} each",
        f"  stored      {stored}; references {human_bytes(d['bytes_referenced'])}",
        f"  parent      {d['parent_id'] or '-'}" + (" (incremental)" if d["incremental"] else ""),
        "  labels      " + (", ".join(f"{k}={v}" for k, v in sorted(d["labels"].items())) or "-"),
    ]
    used = ", ".join(
        f"{k} skipped {human_bytes(v['bytes_skipped'])}" for k, v in d["enhancers_used"].items()
    )
    extra = [f"  used        {used or '-'}"]
    g = d["guard"]
    if g is not None:
        found = "; ".join(
            f"{x.get('enhancer')} lied at offsets {', '.join(map(str, x.get('offsets', [])))}"
            " (read in full)"
            for x in g["lies"]
            if isinstance(x, dict)
        )
        cap = (
            f", capped at {g['max_chunks']} per enhancer from {g['chunks_wanted']}"
            if g["capped"]
            else ""
        )
        extra.append(
            f"  guard       re-read {human_bytes(g['bytes_reread'])} in {g['chunks_checked']}"
            f" sampled chunks ({g['sample_percent']:g}%{cap}): {found or 'no lie found'}"
        )
    lines[5:5] = extra  # after the enhancers of the plan
    lines += [f"  warning     {w}" for w in d["warnings"]]
    return "\n".join(lines)


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    """Print one backup's manifest; exit 3 if there is none, 4 if it is damaged."""
    from pieceworks.common_algorithms.format.manifest import read_manifest  # noqa: PLC0415

    store = ctx.store()
    manifest = read_manifest(store.objects, args.backup_id)
    described = describe(manifest, store.name)
    ctx.out.data(described)
    ctx.out.result(_text(described))
    return ExitCode.OK
