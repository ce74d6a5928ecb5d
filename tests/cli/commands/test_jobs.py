"""``pieceworks jobs show|watch|cancel ID``: an empty id is a usage error; cancel tells
an unknown job (exit 3, ``job-not-found``) from an ended one (exit 1, ``job-ended``).

``jobs show ""`` looked for a job called '' (exit 3), and ``jobs cancel`` of
a job that never existed exited 1 with the reference ``job-failed`` (what
``jobs watch`` says of a job that ran and failed); ``jobs list --state BOGUS``
listed nothing instead of naming the states. Real Redis and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call, MiB, Result, Run, config_file, write_volume
from tests.support.backups import make_backup

PERSISTENCE = "postgresql://postgres@127.0.0.1:5432/test"


def _error(done: Result) -> dict[str, object]:
    error = json.loads(done.err.strip().splitlines()[-1])
    assert isinstance(error, dict)
    return error


@pytest.fixture
def jobs_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    namespace = f"pw-breaker-{uuid.uuid4().hex[:12]}"
    config = config_file(
        tmp_path,
        f'[engine]\npersistence = "memory://"\n'
        f'[jobs]\njobboard = "redis://127.0.0.1:6379/{namespace}"\n'
        f'persistence = "{PERSISTENCE}"\n',
    )
    return {**env, "PIECEWORKS_CONFIG": str(config)}


@pytest.mark.parametrize("action", ["show", "watch", "cancel"])
def test_an_empty_job_id_is_a_usage_error(
    call: Call, jobs_env: dict[str, str], action: str
) -> None:
    done = call("jobs", action, " ", "--json", env=jobs_env)
    assert done.code == ExitCode.USAGE, done
    assert _error(done)["reference"] == "usage-error"


def test_cancel_tells_an_unknown_job_from_an_ended_one(
    call: Call, jobs_env: dict[str, str]
) -> None:
    assert call("jobs", "migrate", env=jobs_env).code == 0
    unknown = call("jobs", "cancel", str(uuid.uuid4()), "--json", env=jobs_env)
    assert unknown.code == ExitCode.NOT_FOUND, unknown
    assert _error(unknown)["reference"] == "job-not-found"

    posted = call("jobs", "post", "backup", "--volume", "v", "--json", env=jobs_env)
    assert posted.code == 0, posted
    job_id = posted.json()["job_id"]
    first = call("jobs", "cancel", job_id, "--json", env=jobs_env)
    assert first.code == 0 and first.json()["cancelled"] == "cancelled", first
    again = call("jobs", "cancel", job_id, "--json", env=jobs_env)
    assert again.code == ExitCode.FAILED, again
    error = _error(again)
    assert error["reference"] == "job-ended" and "REVERTED" in str(error["message"]), error


def test_a_state_no_job_can_be_in_is_a_usage_error(call: Call, jobs_env: dict[str, str]) -> None:
    done = call("jobs", "list", "--state", "BOGUS", "--json", env=jobs_env)
    assert done.code == ExitCode.USAGE, done
    assert "unknown state 'BOGUS'" in str(_error(done)["message"])
    listed = call("jobs", "list", "--state", "success", "--json", env=jobs_env)
    assert listed.code == 0 and listed.json()["jobs"] == [], listed


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "soon"])
def test_watch_timeout_must_be_a_positive_number(call: Call, timeout: str) -> None:
    """``jobs watch ID --timeout -1`` was accepted (and gave up at once): a usage error now."""
    done = call("jobs", "watch", "some-job", "--timeout", timeout)
    assert done.code == ExitCode.USAGE, done
    assert "--timeout" in done.err, done.err


def test_post_backup_takes_backups_labels_and_guard_options(
    run: Run, jobs_env: dict[str, str], home: Path
) -> None:
    """``jobs post backup`` takes the options of ``backup`` (docs/cli.md); ``--label`` and
    ``--guard-sample`` were unrecognized arguments, so a backup run as a job could carry
    no label. A conductor runs the job; the manifest has both."""
    write_volume(home / "volumes", "vol-1", 4 * MiB)
    assert run("jobs", "migrate", env=jobs_env).code == 0
    posted = run(
        "jobs", "post", "backup", "--volume", "vol-1", "--label", "env=prod",
        "--label", "kind=nightly", "--guard-sample", "100", "--json", env=jobs_env,
    )  # fmt: skip
    assert posted.code == 0, posted
    job_id = posted.json()["job_id"]
    conducted = run("conductor", "--max-dispatches", "1", "-q", env=jobs_env, timeout=120)
    assert conducted.code == 0, conducted
    watched = run("jobs", "watch", job_id, "--timeout", "60", env=jobs_env, timeout=90)
    assert watched.code == 0, watched
    backup_id = posted.json()["name"].removeprefix("backup-")
    shown = run("show", backup_id, "--json", env=jobs_env)
    assert shown.code == 0, shown
    assert shown.json()["labels"] == {"env": "prod", "kind": "nightly"}, shown
    assert shown.json()["guard"]["sample_percent"] == 100.0, shown


def test_post_backup_refuses_a_bad_label_as_backup_does(
    call: Call, jobs_env: dict[str, str]
) -> None:
    done = call("jobs", "post", "backup", "--volume", "v", "--label", "nokey", env=jobs_env)
    assert done.code == ExitCode.USAGE, done
    assert "invalid label 'nokey'" in done.err, done


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["jobs", "list", "--jobboard", "redis://127.0.0.1:1/pw", "--persistence", PERSISTENCE],
            ExitCode.FAILED,
            "cannot reach the jobboard redis://127.0.0.1:1/pw: ",
        ),
        (
            ["jobs", "post", "backup", "--volume", "v", "--jobboard", "redis://127.0.0.1:1/pw",
             "--persistence", PERSISTENCE],
            ExitCode.FAILED,
            "cannot reach the jobboard redis://127.0.0.1:1/pw: ",
        ),
        (
            ["jobs", "list", "--jobboard", "redis://127.0.0.1:6379/pw",
             "--persistence", "postgresql://postgres:s3cret@127.0.0.1:1/x"],
            ExitCode.FAILED,
            "cannot connect to the TaskFlow persistence backend 'postgresql://postgres:***@",
        ),
        (
            ["jobs", "list", "--jobboard", "http://127.0.0.1/pw", "--persistence", PERSISTENCE],
            ExitCode.USAGE,
            "unsupported jobboard 'http': use redis://host:port/namespace",
        ),
        (
            ["jobs", "list", "--jobboard", "redis://127.0.0.1:6379/pw", "--persistence", "bogus://x"],
            ExitCode.USAGE,
            "persistence (--persistence or [jobs] persistence) 'bogus://x' cannot be used",
        ),
        (
            ["jobs", "migrate", "--persistence", "postgresql://postgres@127.0.0.1:5432/no_such_db"],
            ExitCode.FAILED,
            "cannot connect to the TaskFlow persistence backend",
        ),
    ],
)  # fmt: skip
def test_a_jobboard_or_persistence_that_cannot_be_used_is_named(
    run: Run, args: list[str], code: ExitCode, message: str
) -> None:
    """Each was ``unexpected JobFailure`` / ``OperationalError`` / ``NotFound`` (exit 1)
    with a library's text; an http:// jobboard exited 1, a bad argument that is."""
    done = run(*args)
    assert done.code == code, done
    assert f"pieceworks: error: {message}" in done.err, done
    assert "unexpected" not in done.err and "s3cret" not in done.err, done


def test_post_restore_takes_overwrite_as_restore_does(
    run: Run, jobs_env: dict[str, str], home: Path
) -> None:
    """A restore job onto an existing volume could only fail: ``jobs post restore`` had no
    ``--overwrite`` (``restore`` and ``jobs post replicate`` have it)."""
    backup_id = make_backup(home, "vol-1", size=MiB).backup_id
    original = (home / "volumes" / "vol-1").read_bytes()
    (home / "volumes" / "vol-1").write_bytes(b"changed" * 1000)
    assert run("jobs", "migrate", env=jobs_env).code == 0
    refused = run("jobs", "post", "restore", backup_id, "--volume", "vol-1", "--json", env=jobs_env)
    replaced = run(
        "jobs", "post", "restore", backup_id, "--volume", "vol-1", "--overwrite", "--json",
        env=jobs_env,
    )  # fmt: skip
    assert refused.code == 0 and replaced.code == 0, (refused, replaced)
    conducted = run("conductor", "--max-dispatches", "2", "-q", env=jobs_env, timeout=120)
    assert conducted.code == 0, conducted
    first = run("jobs", "show", refused.json()["job_id"], env=jobs_env)
    assert "REVERTED" in first.out and "VolumeExists" in first.out, first
    second = run("jobs", "watch", replaced.json()["job_id"], "--timeout", "60", env=jobs_env)
    assert second.code == 0, second
    assert (home / "volumes" / "vol-1").read_bytes() == original
