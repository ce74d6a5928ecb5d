"""``plan ... -o -`` writes to standard output, as ``curl -o -`` and ``tar -f -`` do.

It wrote a file named ``-`` in the working directory ("wrote the dot plan
to -"), where a user who typed it wanted the plan on the terminal or in a
pipe.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Run, write_volume

MiB = 1024 * 1024


def test_plan_output_dash_is_standard_output(run: Run, home: Path, tmp_path: Path) -> None:
    """``-o -`` wrote a file named ``-`` in the working directory; it is standard output."""
    write_volume(home / "volumes", "vol-1", MiB)
    done = run("plan", "backup", "--volume", "vol-1", "--format", "dot", "-o", "-")
    assert done.code == 0 and done.out.startswith('digraph "backup"'), done
    assert not (tmp_path / "-").exists()
    as_json = run("plan", "backup", "--volume", "vol-1", "--json", "-o", "-")
    assert as_json.code == 0 and as_json.json()["operation"] == "backup", as_json
    assert not (tmp_path / "-").exists()
