"""``copy --from-store X --to-store X`` is a usage error, not a configuration error.

It was ``config-error`` with the hint "`pieceworks config` shows the
configuration in use": nothing is wrong with the configuration, only with
the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, Run, config_file
from tests.support.backups import make_backup


def test_copying_a_store_onto_itself_is_a_usage_error(call: Call) -> None:
    done = call("copy", "--from-store", "local", "--to-store", "local", "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error" and "both 'local'" in error["message"], error
    assert "hint" not in error, error


def test_a_damaged_manifest_in_the_target_says_how_to_copy_it_again(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """copy stopped at a damaged manifest of the same backup in the target with only the
    damage (exit 4); it now says the source's copy is intact and how to put it back, and
    that way works."""
    backup_id = make_backup(home, "vol-1").backup_id
    config = config_file(
        tmp_path,
        f'[stores.local]\ndriver = "posix"\npath = "{home / "backups"}"\n'
        f'[stores.far]\ndriver = "posix"\npath = "{tmp_path / "far"}"\n'
        '[engine]\npersistence = "memory://"\n',
    )
    e = {**env, "PIECEWORKS_CONFIG": str(config)}
    assert run("copy", "--from-store", "local", "--to-store", "far", env=e).code == 0
    (tmp_path / "far" / "manifests" / f"{backup_id}.json").write_text("damaged")
    again = run("copy", "--from-store", "local", "--to-store", "far", backup_id, env=e)
    assert again.code == ExitCode.CORRUPT, again
    hint = f"remove the damaged one with `pieceworks delete {backup_id} --store far`"
    assert "(the source's copy is intact)" in again.err and hint in again.err, again
    assert run("delete", backup_id, "--store", "far", env=e).code == 0
    assert run("copy", "--from-store", "local", "--to-store", "far", env=e).code == 0
    assert run("verify", backup_id, "--store", "far", env=e).code == 0
