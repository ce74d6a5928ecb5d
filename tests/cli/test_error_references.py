"""Every ``exit_error`` reference the command line gives is one docs/cli.md documents.

A script tells one failure from another by ``reference`` (docs/cli.md's
table): a reference made up in one command (``plan --json --format dot``
said ``usage`` where every other usage error says ``usage-error``) is one no
script can know of.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.conftest import Run, write_volume

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def documented_references() -> set[str]:
    """The references of docs/cli.md's table (each row's first cell, in backquotes)."""
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    table = text.split("| reference | code | what failed |", 1)[1].split("\n\n", 1)[0]
    found: set[str] = set()
    for row in table.splitlines():
        cells = row.split("|")
        if len(cells) > 2:
            found.update(re.findall(r"`([a-z0-9-]+)`", cells[1]))
    return found


def test_plan_with_json_and_a_picture_format_is_a_usage_error_named_usage_error(
    run: Run, home: Path
) -> None:
    """``--json`` with ``--format dot|svg``: exit 2, reference ``usage-error`` as documented."""
    write_volume(home / "volumes", "vol-1", MiB)
    for fmt in ("dot", "svg"):
        failed = run("plan", "backup", "--volume", "vol-1", "--format", fmt, "--json")
        assert failed.code == 2 and failed.out == "", failed
        doc = json.loads(failed.err.strip().splitlines()[-1])
        assert doc["message_type"] == "exit_error" and doc["code"] == 2, doc
        assert doc["reference"] == "usage-error", doc
        assert f"--format {fmt}" in doc["message"], doc


def test_every_reference_the_commands_name_is_documented() -> None:
    """Each reference written in pieceworks/cli (CliError, explain) is in docs/cli.md's table."""
    documented = documented_references()
    assert {"usage-error", "output-error", "gc-deferred"} <= documented, documented
    pattern = re.compile(r'reference="([a-z0-9-]+)"|explain\(\s*"([a-z0-9-]+)"', re.MULTILINE)
    named: dict[str, str] = {}
    for path in sorted((REPO / "pieceworks" / "cli").rglob("*.py")):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            ref = match.group(1) or match.group(2)
            named.setdefault(ref, str(path.relative_to(REPO)))
    assert named, "no reference found: the pattern no longer matches the code"
    undocumented = {ref: where for ref, where in named.items() if ref not in documented}
    assert not undocumented, f"references missing from docs/cli.md's table: {undocumented}"
