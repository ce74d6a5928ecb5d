"""``pieceworks recover`` recovers every store it can open, and names those it cannot.

With the configuration of docs/cli.md (a local store and an off-site S3
store that is not reachable), ``recover`` stopped at the first store it
could not open: nothing was recovered anywhere, the lease, run journal
and temporary snapshot of a killed backup stayed in the reachable store.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.failpoints import ENV_VAR
from tests.cli.conftest import COMMAND, MiB, Run, write_volume


def test_an_unreachable_store_does_not_stop_the_recovery_of_the_others(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    write_volume(tmp_path / "volumes", "v", MiB)
    config = tmp_path / "pw.toml"
    config.write_text(
        f'[backends.lab]\ndriver = "file"\npath = "{tmp_path}/volumes"\n'
        f'[stores.lab]\ndriver = "posix"\npath = "{tmp_path}/store"\ndurable = false\n'
        '[stores.offsite]\ndriver = "s3"\nendpoint_url = "http://127.0.0.1:9"\n'
        'bucket = "backups"\naccess_key = "lab:backup"\nsecret_key = "s3cr3t-Ab9Zq"\n'
        "retries = 0\n"
        '[engine]\npersistence = "memory://"\n',
        encoding="utf-8",
    )
    e = {**env, "PIECEWORKS_CONFIG": str(config)}
    killed = subprocess.run(
        [*COMMAND, "backup", "--store", "lab", "--volume", "v", "--in-use"],
        env={**e, ENV_VAR: "backup.snapshot-created=kill"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list((tmp_path / "store" / "leases").iterdir())

    done = run("recover", "--json", env=e)
    assert done.code == ExitCode.FAILED, done
    items = done.json()["items"]
    failed = [i for i in items if i["action"] == "failed"]
    assert [(i["kind"], i["where"]) for i in failed] == [("store", "offsite")], items
    assert "cannot open it" in failed[0]["reason"] and "s3cr3t" not in done.out
    removed = {i["kind"] for i in items if i["action"] == "removed"}
    assert {"lease", "run-journal", "temporary-snapshot"} <= removed, items
    assert json.loads(done.err.strip().splitlines()[-1])["reference"] == "recover-failed"
    assert not list((tmp_path / "store" / "leases").iterdir())

    named = run("recover", "--store", "offsite", "--json", env=e)  # asked for: its error
    assert named.code == ExitCode.FAILED, named
    assert json.loads(named.err.strip().splitlines()[-1])["reference"] != "recover-failed"


def test_an_encrypted_store_without_its_passphrase_does_not_stop_the_others(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """A missing passphrase became a usage error (a CliError, not a PieceworksError), and
    ``recover`` stopped at the encrypted store again: exit 2, nothing recovered."""
    write_volume(tmp_path / "volumes", "v", MiB)
    config = tmp_path / "pw.toml"
    config.write_text(
        f'[backends.lab]\ndriver = "file"\npath = "{tmp_path}/volumes"\n'
        f'[stores.lab]\ndriver = "posix"\npath = "{tmp_path}/store"\n'
        f'[stores.vault]\ndriver = "posix"\npath = "{tmp_path}/vault"\n'
        '[engine]\npersistence = "memory://"\n',
        encoding="utf-8",
    )
    e = {**env, "PIECEWORKS_CONFIG": str(config)}
    init = run("key", "init", "--store", "vault", env={**e, "PIECEWORKS_PASSWORD": "p4ss-w0rd"})
    assert init.code == 0, init
    killed = subprocess.run(
        [*COMMAND, "backup", "--store", "lab", "--volume", "v", "--in-use"],
        env={**e, ENV_VAR: "backup.snapshot-created=kill"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = run("recover", "--json", env=e)
    assert done.code == ExitCode.FAILED, done
    items = done.json()["items"]
    failed = [i for i in items if i["action"] == "failed"]
    assert [(i["kind"], i["where"]) for i in failed] == [("store", "vault")], items
    assert "is encrypted: give its passphrase" in failed[0]["reason"], items
    assert not list((tmp_path / "store" / "leases").iterdir())
