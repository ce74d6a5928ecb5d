"""sealed-offload: a remote target pushes into and pulls from an encrypted store itself."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pieceworks.common_algorithms import (
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    plan_backup,
    restore,
    verify,
)
from pieceworks.common_algorithms.format.manifest import read_manifest
from pieceworks.common_algorithms.keys import KdfParams, init_keys, unlock
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.protocols import ISealedOffload, StoreSpec
from pieceworks.protocols.encrypted_store import EncryptedStore
from tests.support.data import mixed_data

CHUNK = 256 * 1024
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real target process logging at -vv into a file; (url, log path)."""
    log = tmp_path / "target.log"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "pieceworks.cli", "target", "serve", "-vv",
             "--dir", str(tmp_path / "volumes"), "--port", "0"],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            deadline, line = time.monotonic() + 30, ""
            while time.monotonic() < deadline and not line:
                line = process.stdout.readline().strip()
            assert line.startswith("listening on "), line
            yield line.removeprefix("listening on "), log
        finally:
            process.terminate()
            process.wait(10)


def test_a_remote_target_offloads_into_an_encrypted_store_without_the_manager(
    target: tuple[str, Path], tmp_path: Path
) -> None:
    """Offload stays eligible: the target seals chunks with keyed ids; restore pulls them."""
    url, log = target
    backend = Backend.of("far", RemoteDriver(url))
    assert backend.provides(ISealedOffload)
    raw = PosixStore(tmp_path / "vault")
    init_keys(raw, "passphrase", KdfParams(n=1 << 10))
    sealed = EncryptedStore(raw, unlock(raw, "passphrase"))
    store = Store("vault", sealed, StoreSpec("vault", "posix", {"path": str(tmp_path / "vault")}))
    data = mixed_data(8, CHUNK)
    driver = backend.driver
    assert isinstance(driver, RemoteDriver)
    driver.write_volume_bytes("vol", data)

    plan = plan_backup(backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK))
    assert plan.chosen == "offload", plan
    out = backup(backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK, in_use=True))
    assert out.strategy == "offload" and out.bytes_through_manager == 0
    manifest = read_manifest(sealed, out.backup_id)
    for ref in manifest.chunks:
        plain = data[ref.offset : ref.offset + ref.length]
        assert ref.digest == sealed.keys.chunk_id(plain) != hashlib.sha256(plain).hexdigest()
    for key in raw.list("chunks/"):
        assert raw.get(key)[:3] == b"PWE"
    assert verify(store, out.backup_id).ok

    # incremental-offload into the sealed store: the parent's keyed ids, checked by size
    again = backup(
        backend, store, BackupRequest(volume_id="vol", chunk_size=CHUNK, incremental=True)
    )
    assert again.bytes_stored == 0 and again.bytes_through_manager == 0
    assert read_manifest(sealed, again.backup_id).chunks == manifest.chunks
    assert f"({len({c.digest for c in manifest.chunks})} known)" in log.read_text()

    restored = restore(backend, store, RestoreRequest(out.backup_id, "copy"))
    assert restored.strategy == "offload"
    assert driver.volume_sha256("copy") == hashlib.sha256(data).hexdigest()

    text = log.read_text()
    for secret in (sealed.keys.object_key, sealed.keys.chunk_id_key):
        assert base64.b64encode(secret).decode() not in text
        assert secret.hex() not in text
