"""Backup and restore jobs into an encrypted store, run by conductors.

The job names the store; the conductor's host configuration gives the file
holding its passphrase (``password_file`` in the store's section, or
``$PIECEWORKS_PASSWORD_FILE``). Neither the passphrase nor any key reaches
the job, the jobboard (Redis), the persistence database (PostgreSQL), the
conductor's log or a process's argv or environment; a conductor without the
passphrase fails the job, saying why, by job id.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import cast

import pytest
import redis
import sqlalchemy

from pieceworks.common_algorithms.keys import _unlock, init_keys
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.execution import JobFailed, wait_for
from pieceworks.protocols.encryption import StoreKeys
from tests.execution.support import (
    PERSISTENCE,
    REDIS_HOST,
    REDIS_PORT,
    Board,
    events,
    make_volume,
    sha256_file,
    spec,
)


def encrypted_store(path: Path) -> tuple[str, list[bytes]]:
    """Make `path` an encrypted store; its passphrase and every form of its key material."""
    passphrase = f"pw-{secrets.token_hex(12)}"
    store = PosixStore(path)
    init_keys(store, passphrase)
    master = _unlock(store, passphrase)[1]
    keys = StoreKeys.from_master(master)
    material = [passphrase.encode()]
    for key in (master, keys.object_key, keys.chunk_id_key):
        material += [key, key.hex().encode(), base64.b64encode(key), base64.b64encode(key)[:-2]]
    return passphrase, material


def host_config(board: Board, tmp_path: Path, name: str, password_file: str | None) -> Path:
    store = spec("lab", "posix", path=str(tmp_path / "store"))
    if password_file is not None:
        store["options"]["password_file"] = password_file
    return board.config(
        name,
        backends={"lab": spec("lab", "file", path=str(tmp_path / "volumes"))},
        stores={"lab": store},
    )


def redis_bytes(namespace: str) -> bytes:
    """Every key and value of the board's namespace, concatenated."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    out = []
    for key in client.scan_iter(match=f"{namespace}*"):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            for k, v in client.hgetall(key).items():
                out += [k, v]
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"zset":
            out += [cast(bytes, m) for m in client.zrange(key, 0, -1)]
    client.close()
    assert out, f"nothing under {namespace} in Redis"
    return b"\n".join(out)


def postgres_text(book_ids: list[str]) -> str:
    """Every persisted row of these jobs' logbooks (logbook, flow details, atoms) as text."""
    engine = sqlalchemy.create_engine(PERSISTENCE)
    rows: list[str] = []
    with engine.connect() as conn:
        for book in book_ids:
            rows += conn.execute(
                sqlalchemy.text("select l::text from logbooks l where l.uuid = :b"), {"b": book}
            ).scalars()
            flows = list(
                conn.execute(
                    sqlalchemy.text(
                        "select f::text, f.uuid from flowdetails f where f.parent_uuid = :b"
                    ),
                    {"b": book},
                )
            )
            rows += [row[0] for row in flows]
            for _, flow in flows:
                rows += conn.execute(
                    sqlalchemy.text("select a::text from atomdetails a where a.parent_uuid = :f"),
                    {"f": flow},
                ).scalars()
    engine.dispose()
    assert len(rows) > 3, "the jobs' logbooks are not in PostgreSQL"
    return "\n".join(rows)


def assert_absent(material: list[bytes], where: str, text: bytes) -> None:
    for secret in material:
        assert secret not in text, f"key material or passphrase found in {where}"


def test_backup_and_restore_jobs_into_an_encrypted_store(board: Board, tmp_path: Path) -> None:
    """The conductor opens the store with its section's password_file (relative to the
    configuration): the backup is sealed, the restore identical, no secret anywhere else."""
    source = make_volume(tmp_path / "volumes", "vol-1", 10)
    passphrase, material = encrypted_store(tmp_path / "store")
    (tmp_path / "lab.pass").write_text(passphrase + "\n")
    config = host_config(board, tmp_path, "host", "lab.pass")
    proc, ev = board.conductor("conductor-1", "--max-dispatches", "2", config=config)
    # Read while it runs: after its second dispatch the conductor exits at once.
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{proc.pid}/environ").read_bytes()

    backup_job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=64 * 1024)
    backup = wait_for(board.url, PERSISTENCE, backup_job, timeout=120)
    backup_id = backup["backup_id"]
    manifest = (tmp_path / "store" / "manifests" / f"{backup_id}.json").read_bytes()
    assert b"vol-1" not in manifest and not manifest.startswith(b"{")  # sealed
    restore_job = board.post_restore("lab", "lab", backup_id=backup_id, volume_id="vol-1-back")
    wait_for(board.url, PERSISTENCE, restore_job, timeout=120)
    assert sha256_file(tmp_path / "volumes" / "vol-1-back") == sha256_file(source)
    assert proc.wait(timeout=60) == 0, board.log("conductor-1")
    assert_absent(material, "the jobboard (Redis)", redis_bytes(board.namespace))
    books = [backup_job.book_uuid, restore_job.book_uuid]
    assert_absent(material, "the persistence (PostgreSQL)", postgres_text(books).encode())
    assert_absent(material, "the conductor's log", board.log("conductor-1").encode())
    assert_absent(material, "the conductor's events", ev.read_bytes())
    assert_absent(material, "the conductor's argv", cmdline)
    assert_absent(material, "the conductor's environment", environ)
    assert [e["event"] for e in events(ev)].count("consumed") == 2


def test_a_conductor_without_the_passphrase_fails_the_job_saying_why(
    board: Board, tmp_path: Path
) -> None:
    """No password_file and no $PIECEWORKS_PASSWORD_FILE: the job fails (not trashed) naming
    its id and the missing passphrase; a conductor given $PIECEWORKS_PASSWORD_FILE runs the
    next one."""
    make_volume(tmp_path / "volumes", "vol-1", 4)
    passphrase, material = encrypted_store(tmp_path / "store")
    config = host_config(board, tmp_path, "host", None)
    no_file = {"PIECEWORKS_PASSWORD_FILE": "", "PIECEWORKS_PASSWORD": passphrase}
    proc, ev = board.conductor("conductor-1", "--max-dispatches", "1", config=config, env=no_file)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=64 * 1024)
    with pytest.raises(JobFailed) as failed:
        wait_for(board.url, PERSISTENCE, job, timeout=120)
    message = str(failed.value)
    assert f"job {job.job_uuid}" in message and "ended in state FAILURE" in message
    assert "store 'lab' is encrypted and this host's configuration gives no passphrase" in message
    assert "password_file" in message
    assert proc.wait(timeout=60) == 0
    assert [e["event"] for e in events(ev)].count("consumed") == 1
    assert not list((tmp_path / "store" / "manifests").glob("*.json"))

    pass_file = tmp_path / "elsewhere.pass"
    pass_file.write_text(passphrase)
    with_file = {"PIECEWORKS_PASSWORD_FILE": str(pass_file)}
    board.conductor("conductor-2", "--max-dispatches", "1", config=config, env=with_file)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=64 * 1024)
    assert wait_for(board.url, PERSISTENCE, job, timeout=120)["volume_id"] == "vol-1"
    assert_absent(material, "the conductor's log", board.log("conductor-2").encode())
