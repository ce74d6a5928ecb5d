"""``pieceworks recover`` reaches every leftover of a killed run, wherever it lies.

Issue 9, what remained open: temporary files of an encrypted store, the
temporary snapshot of a replication that journals in no store, a remote
target's ``.incoming`` copies, and the staleness of owners on other hosts
(``[leases] stale_after_seconds``). Each test kills or fakes the real thing
and runs the real ``pieceworks``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from pieceworks.drivers._files import owned_tag
from pieceworks.failpoints import ENV_VAR
from tests.cli.conftest import COMMAND, Call, MiB, Result, write_volume

PASSWORD = "Tr0ub4dor-&-3-zebra"


def _killed(args: list[str], env: dict[str, str], spec: str, cwd: Path) -> None:
    """Run pieceworks with failpoint `spec` armed; it must die by SIGKILL there."""
    done = subprocess.run(
        [*COMMAND, *args],
        env={**env, ENV_VAR: spec},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, (done.stdout, done.stderr)


def _ok(done: Result) -> Result:
    assert done.code == 0, done
    return done


def _files(top: Path, pattern: str) -> list[str]:
    return sorted(str(p) for p in top.rglob(pattern) if p.is_file())


# -- 4. an encrypted store's temporary files ---------------------------------------


def test_recover_and_gc_sweep_a_dead_writers_tmp_files_in_an_encrypted_store(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A backup killed while a chunk's temporary file exists: recover + gc leave nothing."""
    e = {**env, "PIECEWORKS_PASSWORD": PASSWORD}
    _ok(call("key", "init", env=e))
    write_volume(home / "volumes", "vol", 2 * MiB, seed=4)
    _killed(
        ["backup", "--volume", "vol", "--in-use", "--chunk-size", "256KiB"],
        e,
        "store.tmp-written=kill@4",
        tmp_path,
    )
    store = home / "backups"
    assert _files(store, ".tmp-*"), "the kill left no temporary file: the test proves nothing"
    recovered = _ok(call("recover", "--json", env=e)).json()
    assert recovered["failed"] == 0, recovered
    assert any(
        i["kind"] == "temporary-file" and i["action"] == "removed" for i in recovered["items"]
    ), recovered
    _ok(call("gc", env=e))
    assert _files(store, ".tmp-*") == []
    for sub in ("leases", "locks", "runs"):
        assert _files(store / sub, "*") == [], sub
    assert _files(home / "volumes" / ".snapshots", "*") == []
    assert _ok(call("backup", "--volume", "vol", "--json", env=e)).json()["backup_id"]


def test_gc_sweeps_only_dead_writers_tmp_files_of_an_encrypted_store(
    call: Call, env: dict[str, str], home: Path
) -> None:
    """gc alone sweeps an encrypted store too, and keeps a live writer's temporary file."""
    e = {**env, "PIECEWORKS_PASSWORD": PASSWORD}
    _ok(call("key", "init", env=e))
    chunks = home / "backups" / "chunks" / "ab"
    chunks.mkdir(parents=True)
    mine = chunks / f".tmp-{owned_tag()}"  # this process: alive
    mine.write_bytes(b"x")
    host, _pid, _start, rand = owned_tag().split("-")
    gone = chunks / f".tmp-{host}-{2**22 + 17}-1-{rand}"  # a pid above pid_max: dead
    gone.write_bytes(b"x")
    _ok(call("gc", env=e))
    assert mine.exists()
    assert not gone.exists()
    os.unlink(mine)


# -- 3. [leases] stale_after_seconds -----------------------------------------------


def _config(tmp_path: Path, env: dict[str, str], leases: str) -> dict[str, str]:
    path = tmp_path / "leases.toml"
    path.write_text(f'[engine]\npersistence = "memory://"\n[leases]\n{leases}\n', encoding="utf-8")
    return {**env, "PIECEWORKS_CONFIG": str(path)}


def _foreign_lease(home: Path, backup_id: str, **extra: object) -> Path:
    """Write a lease as a run on another host would; return its file."""
    path = home / "backups" / "leases" / backup_id
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "kind": "lease",
        "id": backup_id,
        "host": "another-host.example",
        "pid": 4242,
        "proc_start": 1,
        "boot_id": "b",
        "token": "0123456789ab",
        "started": time.time(),
        "renewed": time.time(),
        **extra,
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('"soon"', "a string"),
        ("true", "a boolean"),
        ("[1]", "a list"),
        ("0", "more than 0"),
        ("-5", "more than 0"),
        ("nan", "more than 0"),
        ("1e9", "at most"),
    ],
)
def test_a_bad_stale_after_seconds_is_a_configuration_error(
    call: Call, env: dict[str, str], tmp_path: Path, value: str, says: str
) -> None:
    """A wrong type or range names the section and the key, and exits 2 before any work."""
    done = call("gc", env=_config(tmp_path, env, f"stale_after_seconds = {value}"))
    assert done.code == ExitCode.USAGE, done
    assert "[leases]" in done.err and "stale_after_seconds" in done.err and says in done.err, done
    unknown = call("gc", env=_config(tmp_path, env, "stale_after = 5"))
    assert unknown.code == ExitCode.USAGE and "stale_after_seconds" in unknown.err, unknown


def test_a_foreign_owner_is_stale_after_the_configured_time_and_kept_while_it_renews(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """stale_after_seconds = 1.5: a silent foreign lease is removed, a renewed one kept."""
    e = _config(tmp_path, env, "stale_after_seconds = 1.5")
    live = _foreign_lease(home, "bk-renewed")
    stop = threading.Event()

    def renew() -> None:  # the other host's heartbeat
        while not stop.wait(0.2):
            os.utime(live)

    beat = threading.Thread(target=renew, daemon=True)
    beat.start()
    try:
        silent = _foreign_lease(home, "bk-silent")
        slow = _foreign_lease(home, "bk-slow", stale_after=600)  # renews within 600 s
        old = time.time() - 5
        os.utime(silent, (old, old))
        os.utime(slow, (old, old))
        time.sleep(2)  # longer than stale_after_seconds: only a renewal keeps a lease
        gc = call("gc", "--json", env=e)
        assert gc.code == ExitCode.DEFERRED, gc  # by the live foreign owner
        assert sorted(gc.json()["deferred_by"]) == ["bk-renewed", "bk-slow"], gc
        recovered = _ok(call("recover", "--json", env=e)).json()
        actions = {Path(i["name"]).name: i for i in recovered["items"] if i["kind"] == "lease"}
        assert actions["bk-silent"]["action"] == "removed", recovered
        assert "1.5 s" in actions["bk-silent"]["reason"], recovered
        assert actions["bk-renewed"]["action"] == "kept", recovered
        assert "another host" in actions["bk-renewed"]["reason"], recovered
        assert actions["bk-slow"]["action"] == "kept", recovered
        assert "TTL 600 s" in actions["bk-slow"]["reason"], recovered
        assert not silent.exists() and live.exists() and slow.exists()
        slow.unlink()  # that host is gone for good
    finally:
        stop.set()
        beat.join()
    time.sleep(2)  # the heartbeat has stopped: now the owner is silent
    recovered = _ok(call("recover", "--json", env=e)).json()
    assert not live.exists(), recovered
    gc = call("gc", "--json", env=e)
    assert gc.code == ExitCode.OK and gc.json()["deferred_by"] == [], gc


# -- 2. a replication without a store journals on this host -------------------------

_REPLICATE = """
import sys
from pieceworks.common_algorithms import Backend, ReplicateRequest, replicate
from pieceworks.drivers.file import FileDriver
from pieceworks.protocols import BackendSpec

root, strategy = sys.argv[1], sys.argv[2]


def backend(name, path):
    return Backend.of(name, FileDriver(path), BackendSpec(name, "file", {"path": path}))


source, target = backend("local", root + "/volumes"), backend("other", root + "/other")
request = ReplicateRequest(
    "vol", target_volume_id="copy", in_use=True, strategies=(strategy,), chunk_size=256 * 1024
)
replicate(source, target, request, store=None)
"""

_TWO_BACKENDS = """
[backends.local]
driver = "file"
path = "{root}/volumes"
[backends.other]
driver = "file"
path = "{root}/other"
[engine]
persistence = "memory://"
"""


@pytest.mark.parametrize(
    ("strategy", "spec"),
    [
        ("stream", "replicate.snapshot-created=kill"),
        ("stream", "replicate.chunk-copied=kill@3"),
        ("stream", "replicate.snapshot-deleted=kill"),
        ("native", "replicate.snapshot-created=kill"),
        ("native", "replicate.snapshot-deleted=kill"),
    ],
)
def test_recover_removes_the_temporary_snapshot_of_a_killed_replication_without_a_store(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path, strategy: str, spec: str
) -> None:
    """Killed in the library with no store: recover finds its journal and snapshot."""
    root = tmp_path / "site"
    write_volume(root / "volumes", "vol", 2 * MiB, seed=6)
    (root / "other").mkdir()
    script = tmp_path / "replicate.py"
    script.write_text(_REPLICATE, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(root), strategy],
        env={**env, ENV_VAR: spec},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, (done.stdout, done.stderr)
    journal = home / "journal"
    if "snapshot-deleted" not in spec:
        assert _files(root / "volumes" / ".snapshots", "pw-*"), "no temporary snapshot left"
    e = _config(tmp_path, env, "")
    e["PIECEWORKS_CONFIG"] = str(tmp_path / "two.toml")
    (tmp_path / "two.toml").write_text(_TWO_BACKENDS.format(root=root), encoding="utf-8")
    recovered = _ok(call("recover", "--json", env=e)).json()
    assert recovered["failed"] == 0 and recovered["kept"] == 0, recovered
    assert _files(root / "volumes" / ".snapshots", "*") == []
    assert _files(journal, "*") == [] and _files(journal, ".*") == []
    assert _files(root / "other", ".incoming/*") == []
    copy = root / "other" / "copy"
    assert not copy.exists() or copy.read_bytes() == (root / "volumes" / "vol").read_bytes()


# -- a restore to a file, killed: its temporary file is journaled --------------------


def _restore_to_file_killed(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path
) -> tuple[str, Path, Path]:
    """Back up a 2 MiB volume, kill its restore to ``out/disk.img`` after two chunks; the
    backup id, the folder ``out`` and the temporary file the killed restore left in it."""
    write_volume(home / "volumes", "vol", 2 * MiB, seed=9)
    backup_id = _ok(call("backup", "--volume", "vol", "--chunk-size", "256KiB", "--json")).json()[
        "backup_id"
    ]
    out = tmp_path / "out"
    out.mkdir()
    _killed(
        ["restore", backup_id, "--to-file", str(out / "disk.img")],
        env,
        "restore.chunk-written=kill@2",
        tmp_path,
    )
    [left] = list(out.iterdir())
    return str(backup_id), out, left


def test_recover_removes_the_temporary_file_of_a_killed_restore_to_a_file(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """The sparse temporary next to the destination is named in the journal and removed."""
    backup_id, out, left = _restore_to_file_killed(call, env, home, tmp_path)
    assert ".pw-restore-" in left.name and left.stat().st_size == 2 * MiB
    keep = out / "mine.txt"  # a file of the user's, next to it: never touched
    keep.write_text("x")
    recovered = _ok(call("recover", "--json", env=env)).json()
    assert recovered["failed"] == 0, recovered
    assert [i["action"] for i in recovered["items"] if i["name"] == str(left)] == ["removed"]
    # named as on this host, not as a store or backend called "local" (there is none)
    assert [i["where"] for i in recovered["items"] if i["name"] == str(left)] == ["this host"]
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert _files(home / "journal", "*") == []
    _ok(call("restore", backup_id, "--to-file", str(out / "disk.img")))
    assert (out / "disk.img").read_bytes() == (home / "volumes" / "vol").read_bytes()


def test_a_temporary_file_recover_cannot_remove_is_reported_in_words(
    call: Call, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A removal the system refuses (an immutable folder) is a failed item whose reason says
    why in words, not '[Errno 1] Operation not permitted: ...'; the file stays."""
    _, out, left = _restore_to_file_killed(call, env, home, tmp_path)
    made = subprocess.run(["chattr", "+i", str(out)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {made.stderr!r}")
    try:
        recovered = call("recover", "--json", env=env)
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    [item] = [i for i in recovered.json()["items"] if i["name"] == str(left)]
    assert item["action"] == "failed", item
    assert "Operation not permitted" in item["reason"] and "[Errno" not in item["reason"], item
    assert left.exists()
