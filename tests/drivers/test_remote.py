"""The remote driver against a real target process, real files and a real store.

Every test that talks to a target starts `pieceworks.drivers.remote.server`
as a subprocess (``--port 0``, the port read from its first stdout line) and
kills it at teardown: see the `start_target` fixture.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pieceworks.common_algorithms import (
    AllStrategiesFailed,
    Backend,
    BackupRequest,
    RestoreRequest,
    Store,
    backup,
    plan_backup,
    restore,
)
from pieceworks.common_algorithms.format.manifest import list_backup_ids, read_manifest
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.remote import RemoteDriver, protocol_error
from pieceworks.drivers.remote.protocol import redact, secret_values, wire_error
from pieceworks.drivers.remote.transfer import Job, pull_volume, push_volume
from pieceworks.drivers.store_opener import known_store_drivers, open_store
from pieceworks.protocols import (
    BackendError,
    ConfigError,
    CorruptionError,
    InvalidName,
    NotFound,
    OperationCancelled,
    ShortRead,
    SnapshotNotFound,
    SnapshotRef,
    StoreSpec,
    TransientError,
    UnsupportedCodec,
    VolumeNotFound,
    VolumeRef,
    capability_name,
    verify_driver,
)
from pieceworks.protocols.chunks import chunk_key, encode_chunk
from tests.support.data import mixed_data

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]
TARGET = (sys.executable, "-m", "pieceworks.drivers.remote.server")


# -- the target process ---------------------------------------------------------------


@dataclass
class Target:
    """A running target process and how to reach it."""

    url: str
    directory: Path
    log: Path
    process: subprocess.Popen[str]
    token: str | None

    def driver(self, **options: object) -> RemoteDriver:
        """A fresh manager-side driver (its own `wire_bytes` count) for this target."""
        options.setdefault("token", self.token)
        return RemoteDriver(self.url, **options)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line of `process`, or fail within `timeout` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"the target printed nothing within {timeout} s")
    return process.stdout.readline().strip()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # a test may have stopped it
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def start_target(tmp_path: Path) -> Iterator[Callable[..., Target]]:
    """Start target processes (``start_target(*cli_args, token=...)``); all die at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, token: str | None = None, name: str = "target") -> Target:
        home = tmp_path / name
        home.mkdir()
        directory, log = home / "volumes", home / "target.log"
        cmd = [*TARGET, "--dir", str(directory), "--port", "0", *args]
        if token:
            cmd += ["--token", token]
        with open(log, "wb") as err:
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
        started.append(process)
        line = _first_line(process, timeout=20)
        prefix = "listening on "
        assert line.startswith(prefix), f"unexpected first line {line!r}: {log.read_text()}"
        return Target(line[len(prefix) :], directory, log, process, token)

    yield start
    for process in started:
        _stop(process)


@pytest.fixture
def target(start_target: Callable[..., Target]) -> Target:
    """One target with default settings."""
    return start_target()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A POSIX store the manager writes manifests to and the target writes chunks to."""
    path = tmp_path / "store"
    return Store(
        "lab",
        PosixStore(path, durable=False),
        StoreSpec("lab", "posix", {"path": str(path), "durable": "false"}),
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def volume_data(blocks: int) -> bytes:
    """`blocks` MiB of the mixed test data (random, zeros, text) plus a short tail."""
    return mixed_data(blocks, MiB)


def process_io() -> tuple[int, int]:
    """Bytes this process has read and written through any file descriptor."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def request(volume_id: str, **kw: object) -> BackupRequest:
    return BackupRequest(volume_id, chunk_size=MiB, **kw)  # type: ignore[arg-type]


# -- the driver as a driver ----------------------------------------------------------


def test_the_driver_provides_exactly_the_offload_capabilities() -> None:
    """snapshot, push (incremental too), pull (sealed too), compress, replicate-to-peer; never
    stream-out or -in."""
    names = {capability_name(i) for i in verify_driver(RemoteDriver, "remote")}
    assert names == {
        "snapshot",
        "push-to-object-store",
        "pull-from-object-store",
        "sealed-offload",
        "incremental-offload",
        "compress",
        "replicate-to-peer",
    }
    for member in ("open_read", "open_write", "read_range", "write_volume"):
        assert not hasattr(RemoteDriver, member)
    backend = Backend.of("remote", RemoteDriver("http://127.0.0.1:9"))
    assert backend.capability_names == (
        "compress",
        "incremental-offload",
        "pull-from-object-store",
        "push-to-object-store",
        "replicate-to-peer",
        "sealed-offload",
        "snapshot",
    )


def test_options_are_checked_and_the_token_is_never_shown() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        RemoteDriver("http://127.0.0.1:1", colour="blue")
    for url in ("ftp://127.0.0.1:1", "127.0.0.1:80", "http://"):
        with pytest.raises(ConfigError, match="url"):
            RemoteDriver(url)
    for timeout in ("soon", "0", -1):
        with pytest.raises(ConfigError, match="timeout"):
            RemoteDriver("http://127.0.0.1:1", timeout=timeout)
    driver = RemoteDriver("http://127.0.0.1:8470/", token="t0ps3cret", timeout="2.5")
    assert "t0ps3cret" not in repr(driver) and driver.url == "http://127.0.0.1:8470"
    assert driver.wire_bytes == 0


def test_the_plan_for_a_remote_backend_is_offload_with_compress(store: Store) -> None:
    backend = Backend.of("remote", RemoteDriver("http://127.0.0.1:9"))
    plan = plan_backup(backend, store, request("vol", in_use=True))
    assert plan.eligible == ("offload",)
    offload = plan.strategies[0]
    assert offload.enhancers == ("compress",) and "from a temporary snapshot" in offload.reason


# -- end to end through the common algorithms ------------------------------------------


def test_backup_is_offloaded_and_no_volume_byte_crosses_the_manager(
    start_target: Callable[..., Target], store: Store, tmp_path: Path
) -> None:
    """64 MiB: backup by offload, restore by stream-in elsewhere and by pull back.

    Proof that no volume byte passes through the manager: the driver's own
    socket byte count, and this process's read/write byte counts from the
    kernel, each stay under 1% of the volume size.
    """
    # Every long answer is streamed with progress lines, to exercise that path too.
    target = start_target("--answer-within", "0", "--heartbeat", "0.05")
    data = volume_data(64)
    target.driver().write_volume_bytes("vol", data)
    target.driver().write_volume_bytes("warm-up", os.urandom(MiB))
    driver = target.driver()
    backend = Backend.of("remote", driver)
    backup(backend, store, request("warm-up", in_use=True))  # imports, engine set-up

    wire, (read0, written0) = driver.wire_bytes, process_io()
    out = backup(backend, store, request("vol", in_use=True))
    read1, written1 = process_io()
    assert out.strategy == "offload" and out.failed == ()
    assert out.bytes_through_manager == 0
    assert out.size == len(data) and out.bytes_read < len(data)  # zero blocks are holes
    assert 0 < out.bytes_stored < len(data) * 0.6  # holes skipped, text compressed
    limit = len(data) / 100
    assert driver.wire_bytes - wire < limit
    assert read1 - read0 < limit and written1 - written0 < limit
    assert driver.last_progress is not None  # the answer came as a progress stream
    assert driver.list_snapshots("vol") == []  # the temporary snapshot is gone
    manifest = read_manifest(store.objects, out.backup_id)
    assert manifest.strategy == "offload" and manifest.codec == "zstd"
    assert all(store.objects.head(chunk_key(c.digest)).size for c in manifest.chunks)

    # (a) restore through the manager into a local file volume (stream-in)
    (tmp_path / "local").mkdir()
    files = FileDriver(tmp_path / "local")
    local = restore(Backend.of("local", files), store, RestoreRequest(out.backup_id, "copy"))
    assert local.strategy == "stream-in" and local.bytes_through_manager > 0
    assert sha((tmp_path / "local" / "copy").read_bytes()) == sha(data)

    # (b) restore back into the target: it pulls the chunks itself (offload)
    wire, (read0, written0) = driver.wire_bytes, process_io()
    back = restore(backend, store, RestoreRequest(out.backup_id, "restored", overwrite=True))
    read1, written1 = process_io()
    assert back.strategy == "offload" and back.bytes_through_manager == 0
    assert driver.wire_bytes - wire < limit
    assert read1 - read0 < limit and written1 - written0 < limit
    assert driver.volume_sha256("restored") == sha(data)


def test_a_second_backup_writes_no_chunk_again(target: Target, store: Store) -> None:
    driver = target.driver()
    data = volume_data(8)
    driver.write_volume_bytes("vol", data)
    backend = Backend.of("remote", driver)
    first = backup(backend, store, request("vol"))
    second = backup(backend, store, request("vol", in_use=True))
    assert first.bytes_stored > 0 and second.bytes_stored == 0
    assert read_manifest(store.objects, first.backup_id).chunks == (
        read_manifest(store.objects, second.backup_id).chunks
    )


# -- the target's own work --------------------------------------------------------------


def test_admin_helpers_codecs_and_holes(target: Target, store: Store) -> None:
    """Volumes, hashes and codecs; holes are skipped without reading them."""
    assert store.spec is not None
    driver = target.driver()
    assert tuple(driver.compression_codecs()) == ("zstd", "zlib")
    assert set(known_store_drivers()) <= set(driver.info()["store_drivers"])
    driver.create_volume("empty", 256 * MiB)
    with pytest.raises(BackendError):
        driver.create_volume("empty", MiB)
    data = bytes(32 * MiB) + os.urandom(1024) * 1024 + bytes(31 * MiB)
    driver.write_volume_bytes("sparse", data)
    assert [v.volume_id for v in driver.list_volumes()] == ["empty", "sparse"]
    assert driver.volume_sha256("empty") == sha(bytes(256 * MiB))
    assert driver.volume_sha256("sparse") == sha(data)

    nothing = driver.push_to_store(VolumeRef("empty"), store.spec, MiB, "zstd")
    assert nothing.size == 256 * MiB and nothing.chunks == () and nothing.bytes_read == 0
    one = driver.push_to_store(VolumeRef("sparse"), store.spec, MiB, "zlib")
    assert one.bytes_read == MiB  # only the allocated chunk was read
    [chunk] = one.chunks
    assert (chunk.offset, chunk.length, chunk.codec) == (32 * MiB, MiB, "zlib")
    assert store.objects.get(chunk_key(chunk.digest)).startswith(b"PWC\x01")

    small = os.urandom(300_000)
    driver.write_volume_bytes("small", small)
    raw = driver.push_to_store(VolumeRef("small"), store.spec, 64 * 1024, "none")
    assert [c.length for c in raw.chunks] == [65536] * 4 + [300_000 - 4 * 65536]
    assert all(store.objects.get(chunk_key(c.digest))[:4] == b"PWC\x00" for c in raw.chunks)
    with pytest.raises(UnsupportedCodec, match="lz4"):
        driver.push_to_store(VolumeRef("small"), store.spec, MiB, "lz4")
    with pytest.raises(ConfigError, match="chunk size"):
        driver.push_to_store(VolumeRef("small"), store.spec, 1000, "zstd")


def test_unknown_volumes_and_snapshots(target: Target, store: Store) -> None:
    assert store.spec is not None
    driver = target.driver()
    backend = Backend.of("remote", driver)
    with pytest.raises(VolumeNotFound):
        backup(backend, store, request("nope", in_use=True))
    with pytest.raises(VolumeNotFound):
        backup(backend, store, request("nope"))
    assert list_backup_ids(store.objects) == []
    with pytest.raises(VolumeNotFound):
        driver.create_snapshot(VolumeRef("nope"), "s1")
    with pytest.raises(VolumeNotFound):
        driver.volume_sha256("nope")
    driver.create_volume("vol", MiB)
    with pytest.raises(SnapshotNotFound):
        driver.push_to_store(SnapshotRef("vol", "never"), store.spec, MiB, "zstd")
    driver.delete_snapshot(SnapshotRef("vol", "never"))  # idempotent
    with pytest.raises(InvalidName):
        driver.create_snapshot(VolumeRef("vol"), "../escape")


# -- failures -------------------------------------------------------------------------


def test_a_failing_push_is_a_backend_error_and_the_backup_fails_cleanly(
    target: Target, store: Store, tmp_path: Path
) -> None:
    """The store's chunk directory cannot be created (a file is in the way)."""
    assert store.spec is not None
    (tmp_path / "store" / "chunks").write_bytes(b"in the way")
    driver = target.driver()
    driver.write_volume_bytes("vol", volume_data(4))
    with pytest.raises(BackendError) as err:
        driver.push_to_store(VolumeRef("vol"), store.spec, MiB, "zstd")
    assert type(err.value) is BackendError
    assert str(err.value).startswith(f"{target.url}: push volume 'vol' to store 'lab': ")
    assert f"{tmp_path / 'store' / 'chunks'} is not a directory" in str(err.value)  # in the way

    with pytest.raises(AllStrategiesFailed) as failed:
        backup(Backend.of("remote", driver), store, request("vol", in_use=True))
    [attempt] = failed.value.attempts
    assert attempt.strategy == "offload" and attempt.error.startswith("BackendError: ")
    assert "chunks is not a directory" in attempt.error
    assert driver.list_snapshots("vol") == []  # reverted: the snapshot is deleted
    assert list_backup_ids(store.objects) == []
    assert not list(store.objects.list("leases/"))


def test_a_corrupt_or_missing_chunk_stops_the_pull_and_keeps_the_volume(
    target: Target, store: Store
) -> None:
    driver = target.driver()
    backend = Backend.of("remote", driver)
    driver.write_volume_bytes("vol", os.urandom(4 * MiB))
    out = backup(backend, store, request("vol"))
    driver.write_volume_bytes("restored", b"previous content")
    chunks = read_manifest(store.objects, out.backup_id).chunks
    key = chunk_key(chunks[2].digest)
    damaged = bytearray(store.objects.get(key))
    damaged[-1] ^= 0xFF
    store.objects.put(key, bytes(damaged))
    with pytest.raises(CorruptionError) as err:
        restore(backend, store, RestoreRequest(out.backup_id, "restored", overwrite=True))
    assert err.value.offset == 2 * MiB and f"at offset {2 * MiB}" in str(err.value)
    assert driver.volume_sha256("restored") == sha(b"previous content")

    store.objects.delete(key)
    with pytest.raises(CorruptionError, match="missing") as err:
        restore(backend, store, RestoreRequest(out.backup_id, "restored", overwrite=True))
    assert err.value.offset == 2 * MiB
    assert driver.volume_sha256("restored") == sha(b"previous content")
    incoming = target.directory / ".incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


def test_a_token_is_required_when_the_target_has_one(
    start_target: Callable[..., Target],
) -> None:
    target = start_target(token="tok-4f9a7c2e91")
    assert target.driver().list_volumes() == []
    for token in (None, "wrong-token"):
        with pytest.raises(ConfigError, match="refused the token"):
            RemoteDriver(target.url, token=token).list_volumes()
    with pytest.raises(ConfigError, match="refused the token"):
        RemoteDriver(target.url).write_volume_bytes("vol", os.urandom(4 * MiB))
    assert "vol" not in [v.volume_id for v in target.driver().list_volumes()]
    assert "tok-4f9a7c2e91" not in target.log_text()


def test_store_spec_problems_are_config_errors_without_secrets(
    target: Target, store: Store
) -> None:
    driver = target.driver()
    driver.write_volume_bytes("vol", os.urandom(MiB))
    with pytest.raises(ConfigError) as err:
        driver.push_to_store(VolumeRef("vol"), StoreSpec("lab", "nosuch"), MiB, "zstd")
    assert "unknown store driver 'nosuch'" in str(err.value)
    assert "known store drivers are posix, s3, swift" in str(err.value)
    secret = "AKIA-0f3c9e-very-secret"
    spec = StoreSpec("lab", "posix", {"path": str(store.spec.options["path"]), "key": secret})  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="unknown option") as err:
        driver.push_to_store(VolumeRef("vol"), spec, MiB, "zstd")
    assert secret not in str(err.value) and secret not in target.log_text()
    with pytest.raises(AllStrategiesFailed, match=r"ConfigError: .*unknown store driver"):
        backup(
            Backend.of("remote", driver),
            Store("lab", store.objects, StoreSpec("lab", "nosuch", {"key": secret})),
            request("vol"),
        )


def test_secret_option_values_are_masked_in_error_messages() -> None:
    options = {"path": "/srv/backups", "key": "s3cr3t-key-value", "user": "acct:me", "x": "abc"}
    secrets = secret_values(options)
    assert secrets == ["s3cr3t-key-value", "acct:me"]  # path is harmless; "abc" too short
    text = "cannot reach https://acct:me:s3cr3t-key-value@host/ for /srv/backups"
    assert redact(text, secrets) == "cannot reach https://***:***@host/ for /srv/backups"
    assert redact("GET https://u:pw0@h/x password=hunter2", []) == (
        "GET https://u:***@h/x password=***"
    )
    status, body = wire_error(RuntimeError("boom s3cr3t-key-value"), secrets)
    assert status == 500 and body["type"] == "BackendError"
    assert body["message"] == "internal error: RuntimeError: boom ***"


def test_a_dead_or_stuck_target_is_a_transient_error_not_a_hang(
    target: Target, store: Store
) -> None:
    assert store.spec is not None
    driver = target.driver(timeout=1)
    driver.write_volume_bytes("vol", volume_data(16))
    backend = Backend.of("remote", driver)

    target.process.send_signal(signal.SIGSTOP)  # stuck: connects, never answers
    started = time.monotonic()
    with pytest.raises(TransientError, match="no answer within 1 s"):
        driver.list_volumes()
    assert time.monotonic() - started < 5

    # A push in flight when the target dies ends at once with a TransientError.
    outcome: list[BaseException] = []

    def push() -> None:
        try:
            target.driver(timeout=30).push_to_store(VolumeRef("vol"), store.spec, MiB, "zstd")  # type: ignore[arg-type]
        except BaseException as exc:
            outcome.append(exc)

    pusher = threading.Thread(target=push)
    pusher.start()
    time.sleep(0.3)
    started = time.monotonic()
    target.process.kill()
    pusher.join(10)
    assert not pusher.is_alive() and time.monotonic() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], TransientError), outcome
    assert "[Errno" not in str(outcome[0]), outcome  # the reason in words
    target.process.wait(5)

    with pytest.raises(TransientError, match="connection refused"):
        driver.list_volumes()
    started = time.monotonic()
    with pytest.raises(AllStrategiesFailed, match=r"offload: TransientError: .*connection refused"):
        backup(backend, store, request("vol", in_use=True))
    assert time.monotonic() - started < 10
    assert list_backup_ids(store.objects) == []


def test_a_push_longer_than_the_timeout_lives_on_the_target_s_heartbeat(
    start_target: Callable[..., Target], store: Store
) -> None:
    """The timeout bounds silence, not duration: progress lines keep the push alive."""
    assert store.spec is not None
    target = start_target("--threads", "1", "--answer-within", "0", "--heartbeat", "0.05")
    # zlib-6 over random 6-bit bytes runs at ~20-40 MB/s here: 64 MiB takes well over
    # 0.5 s. (Fully random bytes are stored without compressing them: a quick push.)
    six_bits = bytes(b & 0x3F for b in range(256))
    target.driver().write_volume_bytes("vol", os.urandom(64 * MiB).translate(six_bits))
    driver = target.driver(timeout=0.25)
    started = time.monotonic()
    pushed = driver.push_to_store(VolumeRef("vol"), store.spec, MiB, "zlib")  # slow on purpose
    assert time.monotonic() - started > 2 * 0.25
    assert len(pushed.chunks) == 64 and driver.last_progress is not None


def test_error_answers_map_to_the_protocol_errors() -> None:
    def error(status: int, kind: str | None = None, offset: int | None = None) -> Exception:
        body = {"type": kind, "message": "said the target", "offset": offset} if kind else None
        return protocol_error(status, body, "http://t:1: push")

    assert type(error(404, "VolumeNotFound")) is VolumeNotFound
    assert type(error(404, "SnapshotNotFound")) is SnapshotNotFound
    assert type(error(400, "UnsupportedCodec")) is UnsupportedCodec
    assert type(error(400, "ConfigError")) is ConfigError
    assert type(error(503, "TransientError")) is TransientError
    assert type(error(503)) is TransientError  # a proxy's bare 503
    assert type(error(500, "BackendError")) is BackendError
    assert type(error(500, "SomethingNew")) is BackendError
    assert type(error(500, "ShortRead")) is ShortRead  # final: no strategy falls back from it
    assert wire_error(ShortRead("short read at offset 0"))[1]["type"] == "ShortRead"
    assert type(error(401, "Unauthorized")) is ConfigError
    corrupt = error(422, "CorruptionError", offset=4096)
    assert isinstance(corrupt, CorruptionError) and corrupt.offset == 4096
    assert str(corrupt) == "http://t:1: push: said the target"
    assert "API 1" in str(error(404, "NoSuchEndpoint"))


# -- the pieces, in process -------------------------------------------------------------


def test_open_store_finds_store_drivers_by_entry_point(tmp_path: Path) -> None:
    assert {"posix", "s3", "swift"} <= set(known_store_drivers())
    opened = open_store(StoreSpec("lab", "posix", {"path": str(tmp_path / "s")}))
    assert isinstance(opened, PosixStore)
    with pytest.raises(ConfigError, match=r"unknown store driver 'tape': known store drivers"):
        open_store(StoreSpec("lab", "tape"))
    with pytest.raises(ConfigError, match="bad options"):
        open_store(StoreSpec("lab", "posix", {}))  # no path
    with pytest.raises(ConfigError, match="durable"):
        open_store(StoreSpec("lab", "posix", {"path": str(tmp_path), "durable": "maybe"}))


def test_a_cancelled_pull_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    """The manager going away cancels the target's job; nothing is committed."""
    (tmp_path / "v").mkdir()
    files = FileDriver(tmp_path / "v")
    objects = PosixStore(tmp_path / "s", durable=False)
    data = os.urandom(4 * MiB)
    files.write_volume(VolumeRef("vol"), data)
    pushed = push_volume(files, VolumeRef("vol"), objects, MiB, "zstd")
    assert pushed.bytes_read == len(data) and len(pushed.chunks) == 4
    files.write_volume(VolumeRef("copy"), b"old")
    job = Job()
    job.cancelled.set()
    with pytest.raises(OperationCancelled):
        pull_volume(files, VolumeRef("copy"), pushed.size, objects, pushed.chunks, job=job)
    assert (tmp_path / "v" / "copy").read_bytes() == b"old"
    assert pull_volume(files, VolumeRef("copy"), pushed.size, objects, pushed.chunks) == len(data)
    assert (tmp_path / "v" / "copy").read_bytes() == data


def test_a_push_stores_the_same_objects_as_encode_chunk(tmp_path: Path) -> None:
    """Random chunks are put from their read buffers (`encode_framed`), compressible ones
    compressed, the short last one too: every object is byte for byte `encode_chunk`'s."""
    (tmp_path / "v").mkdir()
    files = FileDriver(tmp_path / "v")
    objects = PosixStore(tmp_path / "s", durable=False)
    text = b"2026-11-30 07:30:00 INFO pushed a chunk\n" * (MiB // 40)
    data = os.urandom(2 * MiB) + text[:MiB] + os.urandom(MiB // 3)
    files.write_volume(VolumeRef("vol"), data)
    pushed = push_volume(files, VolumeRef("vol"), objects, MiB, "zstd")
    assert [c.codec for c in pushed.chunks] == ["none", "none", "zstd", "none"]
    for ref in pushed.chunks:
        plain = data[ref.offset : ref.offset + ref.length]
        assert objects.get(chunk_key(ref.digest)) == encode_chunk(plain, "zstd")
    assert pushed.bytes_written == sum(c.stored_length for c in pushed.chunks)


def test_the_target_command_reports_a_bad_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    result = subprocess.run(
        [*TARGET, "--dir", str(tmp_path / "file" / "sub"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "error:" in result.stderr


def test_a_pull_from_a_store_the_target_does_not_have_creates_nothing(
    target: Target, store: Store, tmp_path: Path
) -> None:
    """A store path the target's host does not have was created there, empty, and the pull
    then failed on a missing chunk (CorruptionError naming an offset): a pull only reads."""
    driver = target.driver()
    backend = Backend.of("remote", driver)
    driver.write_volume_bytes("vol", os.urandom(4 * MiB))
    out = backup(backend, store, request("vol"))
    missing = tmp_path / "not-on-the-target"
    elsewhere = Store(
        "lab", store.objects, StoreSpec("lab", "posix", {"path": str(missing), "durable": "false"})
    )
    with pytest.raises(NotFound, match="does not exist") as err:
        restore(backend, elsewhere, RestoreRequest(out.backup_id, "restored"))
    assert not isinstance(err.value, CorruptionError)
    assert not missing.exists()
    assert not (target.directory / "restored").exists()
