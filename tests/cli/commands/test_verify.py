"""``verify --against-source`` of a backup whose volume is gone names the backend.

It said ``no volume 'vol-1'``; every other command that takes a volume says
``unknown volume 'vol-1' on backend 'local' (volumes: ...)``.
"""

from __future__ import annotations

from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Run
from tests.support.backups import make_backup


def test_a_missing_source_volume_is_named_with_its_backend(run: Run, home: Path) -> None:
    backup_id = make_backup(home, "vol-1").backup_id
    make_backup(home, "vol-2")
    (home / "volumes" / "vol-1").unlink()
    done = run("verify", backup_id, "--against-source")
    assert done.code == ExitCode.NOT_FOUND, done
    assert "unknown volume 'vol-1' on backend 'local' (volumes: vol-2)" in done.err, done
