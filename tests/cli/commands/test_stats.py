"""``stats`` counts a volume of one backend apart from a volume of the same name on another."""

from __future__ import annotations

from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Run
from tests.support.backups import make_backup, other_backend_backup, two_backends_config


def test_stats_counts_volumes_of_one_name_on_two_backends_apart(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """``db`` of backends ``local`` and ``other`` were one row of two backups, their
    chunks pooled into one volume's dedup ratio."""
    make_backup(home, "db", seed=1)
    other_backend_backup(tmp_path, home, "db")
    two = {**env, "PIECEWORKS_CONFIG": str(two_backends_config(tmp_path, home))}
    done = run("stats", "--json", env=two)
    assert done.code == ExitCode.OK, done
    rows = {(v["backend"], v["volume_id"]): v["backups_total"] for v in done.json()["volumes"]}
    assert rows == {("local", "db"): 1, ("other", "db"): 1}
    text = run("stats", env=two)
    assert [line.split()[:3] for line in text.out.splitlines()[1:3]] == [
        ["db", "local", "1"],
        ["db", "other", "1"],
    ], text
