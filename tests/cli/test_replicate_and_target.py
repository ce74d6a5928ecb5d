"""``pieceworks replicate``, ``plan replicate`` and ``target serve``, end to end."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

from tests.cli.conftest import COMMAND, MiB, Run, config_file, write_volume


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _two_file_backends(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    config = config_file(
        tmp_path,
        f"""
[backends.a]
driver = "file"
path = "{tmp_path / "a"}"
[backends.b]
driver = "file"
path = "{tmp_path / "b"}"
[stores.s]
driver = "posix"
path = "{tmp_path / "store"}"
[engine]
persistence = "memory://"
""",
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "store").mkdir()  # plan replicate never creates the store: an empty one exists
    return {**env, "PIECEWORKS_CONFIG": str(config)}


def test_replicate_copies_natively_between_file_backends(
    run: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    """The plan explains each strategy; the copy is native and byte for byte; --json reports."""
    e = _two_file_backends(tmp_path, env)
    source = write_volume(tmp_path / "a", "vol1", 3 * MiB)
    args = ("--from-backend", "a", "--volume", "vol1", "--to-backend", "b", "--in-use")
    plan = run("plan", "replicate", *args, "--json", env=e)
    assert plan.code == 0, plan
    data = plan.json()
    assert data["operation"] == "replicate" and data["chosen"] == "native"
    assert [s["name"] for s in data["strategies"]] == ["native", "stream", "via-store"]
    done = run("replicate", *args, "--to-volume", "copy", "--json", env=e)
    assert done.code == 0, done
    result = done.json()
    assert result["strategy"] == "native" and result["bytes_through_manager"] == 0
    assert _sha(tmp_path / "b" / "copy") == _sha(source)


def test_replicate_errors_are_one_line_with_exit_codes(
    run: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    """Unknown volume: exit 3; onto itself: exit 2; unknown backend: exit 3."""
    e = _two_file_backends(tmp_path, env)
    write_volume(tmp_path / "a", "vol1", MiB)
    missing = run(
        "replicate", "--from-backend", "a", "--volume", "nope", "--to-backend", "b", env=e
    )
    assert missing.code == 3 and "unknown volume 'nope' on backend 'a'" in missing.err
    itself = run("replicate", "--from-backend", "a", "--volume", "vol1", "--to-backend", "a", env=e)
    assert itself.code == 2 and "onto itself" in itself.err
    unknown = run(
        "replicate", "--from-backend", "a", "--volume", "vol1", "--to-backend", "z", env=e
    )
    assert unknown.code == 3, unknown


def test_target_serve_runs_a_remote_target_the_remote_driver_uses(
    run: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    """`pieceworks target serve` listens; a backend with driver remote backs up through it."""
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    server = subprocess.Popen(
        [*COMMAND, "target", "serve", "--dir", str(tmp_path / "t"), "--token-file", str(token)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.removeprefix("listening on ")
        write_volume(tmp_path / "t", "vol1", 2 * MiB)
        config = config_file(
            tmp_path,
            f"""
[backends.far]
driver = "remote"
url = "{url}"
token = "s3cr3t-token"
[stores.s]
driver = "posix"
path = "{tmp_path / "store"}"
[engine]
persistence = "memory://"
""",
        )
        e = {**env, "PIECEWORKS_CONFIG": str(config)}
        listed = run("volumes", env=e)
        assert listed.code == 0 and "vol1" in listed.out, listed
        backed = run("backup", "--volume", "vol1", "--in-use", "--json", env=e)
        assert backed.code == 0, backed
        assert backed.json()["strategy"] == "offload"
        assert backed.json()["bytes_through_manager"] == 0
        assert "s3cr3t-token" not in backed.out + backed.err
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0 or server.returncode == -signal.SIGTERM
    assert os.path.isdir(tmp_path / "t")


def test_an_unknown_snapshot_is_named_in_words(
    run: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    """``replicate --snapshot nope`` said ``no snapshot SnapshotRef(volume_id='vol-1',
    snapshot_id='nope')``: the reference's repr reached the user."""
    e = _two_file_backends(tmp_path, env)
    write_volume(tmp_path / "a", "vol-1", MiB)
    done = run(
        "replicate", "--from-backend", "a", "--volume", "vol-1", "--to-backend", "b",
        "--snapshot", "nope", env=e,
    )  # fmt: skip
    assert done.code == 3, done
    assert "pieceworks: error: no snapshot 'nope' of volume 'vol-1'" in done.err, done
    assert "SnapshotRef" not in done.err, done


def test_offload_reports_count_what_the_backend_did(
    run: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    """Through a remote target, every backup said ``0 new chunks`` and ``0 holes`` (however
    many it wrote or skipped), every restore ``written 0 B``, and ``volumes`` a size of
    ``?`` for each volume, though the target reports all of them."""
    server = subprocess.Popen(
        [*COMMAND, "target", "serve", "--dir", str(tmp_path / "t")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip().removeprefix("listening on ")
        volume = write_volume(tmp_path / "t", "vol1", 4 * MiB)
        os.truncate(volume, 6 * MiB)  # 2 MiB of hole at the end
        config = config_file(
            tmp_path,
            f'[backends.far]\ndriver = "remote"\nurl = "{url}"\n'
            f'[stores.s]\ndriver = "posix"\npath = "{tmp_path / "store"}"\n'
            '[engine]\npersistence = "memory://"\n',
        )
        e = {**env, "PIECEWORKS_CONFIG": str(config)}
        listed = run("volumes", "--json", env=e)
        assert listed.json()[0]["size"] == 6 * MiB, listed
        size = ["--chunk-size", "1MiB"]
        full = run("backup", "--volume", "vol1", *size, "--json", env=e).json()
        assert (full["chunks_total"], full["chunks_new"], full["holes"]) == (4, 4, 2), full
        with open(volume, "r+b") as f:  # change one chunk
            f.seek(MiB)
            f.write(os.urandom(4096))
        again = run("backup", "--volume", "vol1", *size, "--json", env=e).json()
        assert (again["chunks_new"], again["holes"]) == (1, 2), again
        restored = run("restore", again["backup_id"], "--volume", "vol2", "--json", env=e)
        assert restored.code == 0, restored
        assert restored.json()["bytes_written"] == 4 * MiB, restored
        text = run("restore", again["backup_id"], "--volume", "vol3", env=e)
        assert "written   4.0 MiB" in text.out, text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
