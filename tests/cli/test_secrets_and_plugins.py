"""Secrets never printed; third-party drivers and stores work through entry points."""

from __future__ import annotations

from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import MiB, RunAll, config_file, with_plugins, write_volume

SECRETS = ("s3cr3t-KEY-4242", "hunter2-hunter2", "tok-ABCDEF123", "dbpass-7777")


def test_secrets_are_masked_in_logs_errors_plans_and_json(
    run_all: RunAll, env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    """The vault store logs its key, password and token and puts them in its error; the
    persistence URL holds a password: none of it reaches stdout or stderr, *** does."""
    write_volume(home / "volumes", "vol-1", MiB)
    cfg = config_file(
        tmp_path,
        f"""
[backends.local]
driver = "file"
path = "{home / "volumes"}"

[stores.vault]
driver = "vault"
path = "{tmp_path / "vault"}"
key = "{SECRETS[0]}"
password = "{SECRETS[1]}"
token = "{SECRETS[2]}"

[stores.refusing]
driver = "vault"
path = "{tmp_path / "vault"}"
key = "{SECRETS[0]}"
token = "{SECRETS[2]}"
refuse = true

[engine]
persistence = "postgresql+psycopg2://backup:{SECRETS[3]}@127.0.0.1:1/pieceworks"
""",
    )
    c = ["--config", str(cfg)]
    results = run_all(
        [
            [*c, "config"],
            [*c, "config", "--json"],
            [*c, "-v", "--store", "vault", "plan", "backup", "--volume", "vol-1", "--json"],
            [*c, "--store", "refusing", "list"],
            [*c, "-v", "--store", "vault", "backup", "--volume", "vol-1", "--json"],
        ],
        with_plugins(env),
    )
    shown, as_json, plan_json, refused, backup = results
    for r in results:
        for secret in SECRETS:
            assert secret not in r.out and secret not in r.err, (secret, str(r))
    assert shown.code == 0 and "key = ***" in shown.out and "password = ***" in shown.out
    assert "postgresql+psycopg2://backup:***@127.0.0.1:1/pieceworks" in shown.out
    vault = as_json.json()["stores"]["vault"]
    assert vault["key"] == vault["password"] == vault["token"] == "***"
    assert plan_json.code == 0 and plan_json.json()["chosen"] == "direct-stream", plan_json
    assert "vault: logging in with key ***, password ***, token ***" in plan_json.err
    assert "configuration: file" in plan_json.err and "key=***" in plan_json.err
    assert refused.code == ExitCode.USAGE, refused
    assert refused.err == (
        f"pieceworks: error: {cfg} [stores.refusing]: vault refused the login:"
        " key *** (token ***) is not valid\n"
    )
    assert backup.code == ExitCode.FAILED, backup
    assert "cannot connect to the TaskFlow persistence backend" in backup.err
    assert "backup:***@127.0.0.1:1" in backup.err


def test_a_third_party_offloading_driver_backs_up_and_restores_through_entry_points(
    run_all: RunAll, env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    """Driver "offload" comes from an entry point only; the store section is the StoreSpec
    it writes to by itself: no volume byte crosses pieceworks either way."""
    volumes = home / "volumes"
    data = write_volume(volumes, "vol-1", 4 * MiB).read_bytes()
    cfg = config_file(
        tmp_path,
        f"""
[backends.far]
driver = "offload"
path = "{volumes}"

[stores.local]
driver = "posix"
path = "{home / "backups"}"

[engine]
persistence = "memory://"
""",
    )
    plugins = with_plugins(env)
    (made,) = run_all([["--config", str(cfg), "backup", "--volume", "vol-1", "--json"]], plugins)
    assert made.code == 0, made
    out = made.json()
    assert out["strategy"] == "offload" and out["bytes_through_manager"] == 0
    back, listed = run_all(
        [
            ["--config", str(cfg), "restore", out["backup_id"], "--volume", "copy", "--json"],
            ["--config", str(cfg), "list", "--json"],
        ],
        plugins,
    )
    assert back.code == 0 and back.json()["strategy"] == "offload", back
    assert back.json()["bytes_through_manager"] == 0
    assert (volumes / "copy").read_bytes() == data
    assert listed.json()[0]["backend"] == "far" and listed.json()[0]["strategy"] == "offload"


def test_masking_hides_secrets_not_words(run_all: RunAll, env: dict[str, str]) -> None:
    """A problem about ``change_token`` and a volume id ``secret: abc`` are printed as
    they are: no configured secret is in them, so nothing is masked."""
    token, volume = run_all(
        [
            ["check-driver", "pieceworks_cli_testplugins.checks:BadChangeToken"],
            ["backup", "--volume", "secret: abc"],
        ],
        with_plugins(env),
    )
    assert token.code == ExitCode.FAILED, token
    assert "change_token: parameter 'source' is annotated int" in token.err
    assert "***" not in token.err
    assert volume.code == ExitCode.USAGE, volume
    assert "'secret: abc'" in volume.err and "***" not in volume.err
