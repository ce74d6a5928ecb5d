"""``copy BACKUP_ID --volume V``: the two filtered each other, and an id was skipped silently.

``copy --from-store a --to-store b --volume vol-1 bk-<of vol-2>`` printed
"copied 0 backup(s) ... (0 already there)" and exited 0: the backup named
was not copied and nothing said why. The two exclude each other now (exit
2, nothing opened or copied). ``--volume`` that matches no backup says so
on stderr (exit 0, as ``list`` with filters that match nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Run, config_file, write_volume

KiB = 1024


def _stores(tmp_path: Path, home: Path) -> dict[str, str]:
    path = config_file(
        tmp_path,
        f"""
[backends.local]
driver = "file"
path = "{home / "volumes"}"
[stores.local]
driver = "posix"
path = "{home / "backups"}"
[stores.off]
driver = "posix"
path = "{tmp_path / "off"}"
[engine]
persistence = "memory://"
""",
    )
    return {"PIECEWORKS_CONFIG": str(path)}


def test_backup_ids_and_volume_exclude_each_other(
    run: Run, tmp_path: Path, home: Path, env: dict[str, str]
) -> None:
    e = {**env, **_stores(tmp_path, home)}
    write_volume(home / "volumes", "vol-1", 256 * KiB, seed=1)
    write_volume(home / "volumes", "vol-2", 256 * KiB, seed=2)
    run("backup", "--volume", "vol-1", "-q", env=e)
    made = run("backup", "--volume", "vol-2", "--json", "-q", env=e)
    assert made.code == 0, made
    other = made.json()["backup_id"]
    done = run("copy", "--from-store", "local", "--to-store", "off", "--volume", "vol-1", other,
               "--json", env=e)  # fmt: skip
    assert done.code == 2 and done.out == "", done
    doc = json.loads(done.err.strip().splitlines()[-1])
    assert doc["reference"] == "usage-error", doc
    assert "BACKUP_ID and --volume exclude each other" in doc["message"], doc
    assert not (tmp_path / "off" / "manifests").exists() or not any(
        (tmp_path / "off" / "manifests").iterdir()
    )
    copied = run("copy", "--from-store", "local", "--to-store", "off", other, "--json", env=e)
    assert copied.code == 0 and copied.json()["copied_backup_ids"] == [other], copied


def test_a_volume_with_no_backup_says_so(
    run: Run, tmp_path: Path, home: Path, env: dict[str, str]
) -> None:
    e = {**env, **_stores(tmp_path, home)}
    write_volume(home / "volumes", "vol-1", 256 * KiB)
    run("backup", "--volume", "vol-1", "-q", env=e)
    done = run("copy", "--from-store", "local", "--to-store", "off", "--volume", "nosuch", env=e)
    assert done.code == 0, done
    assert "pieceworks: no backup of volume 'nosuch' in store 'local'" in done.err, done
