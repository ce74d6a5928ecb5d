"""Native replication between two remote targets: target to target, no byte via the manager.

The targets are real processes (the `start_target` fixture of
`tests.drivers.test_remote`); the manager's side is `RemoteDriver` and the
`replicate` common algorithm. What crosses the manager is measured on the
drivers' own sockets (`wire_bytes`) and in this process's I/O counters.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from pieceworks.common_algorithms import Backend, ReplicateRequest, Store, replicate
from pieceworks.common_algorithms.operations.planning import plan_replicate
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.drivers.remote.protocol import FRAME_HEADER, Peer
from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    ConfigError,
    SnapshotNotFound,
    SnapshotRef,
    TransientError,
    VolumeNotFound,
    VolumeRef,
    capability_name,
    verify_driver,
)
from tests.drivers.test_remote import (
    MiB,
    Target,
    process_io,
    sha,
    start_target,
    store,
    volume_data,
)

__all__ = ["start_target", "store"]  # fixtures shared with test_remote

STREAM_REASON = (
    "needs stream-out on the source and stream-in on the target; missing stream-out and stream-in"
)


def spec(name: str, target: Target, **options: str) -> BackendSpec:
    """The backend spec a peer is reached by: url, and token if the target has one."""
    values = {"url": target.url, **({"token": target.token} if target.token else {})}
    return BackendSpec(name, "remote", {**values, **options})


def backend(name: str, target: Target, **options: str) -> Backend:
    """A remote backend with a fresh driver (its own `wire_bytes`) and its spec."""
    return Backend.of(name, target.driver(), spec(name, target, **options))


def driver_of(backend: Backend) -> RemoteDriver:
    assert isinstance(backend.driver, RemoteDriver)
    return backend.driver


@pytest.fixture
def pair(start_target: Callable[..., Target]) -> tuple[Target, Target]:
    """Two targets with their own tokens; every long answer streamed with heartbeats."""
    fast = ("--answer-within", "0", "--heartbeat", "0.05")
    return (
        start_target(*fast, token="tok-a-5e1d0c9b", name="a"),
        start_target(*fast, token="tok-b-77f3a2c4", name="b"),
    )


def incoming(target: Target) -> list[str]:
    """Copies being written on a target (``.incoming`` of its `FileDriver`)."""
    folder = target.directory / ".incoming"
    return sorted(os.listdir(folder)) if folder.exists() else []


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


# -- the driver and the plan -------------------------------------------------------------


def test_the_driver_also_replicates_to_a_peer() -> None:
    """verify_driver lists replicate-to-peer; any remote spec with a url is a peer."""
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
    driver = RemoteDriver("http://127.0.0.1:9")
    assert driver.accepts_peer(BackendSpec("b", "remote", {"url": "http://10.0.0.8:8470"}))
    assert driver.accepts_peer(BackendSpec("b", "remote", {"url": "http://h:1/p", "token": "t"}))
    assert not driver.accepts_peer(BackendSpec("b", "remote", {}))
    assert not driver.accepts_peer(BackendSpec("b", "remote", {"url": "ftp://h:1"}))
    assert not driver.accepts_peer(BackendSpec("b", "remote", {"url": "http://h:x"}))
    assert not driver.accepts_peer(BackendSpec("b", "file", {"url": "http://h:1"}))
    with pytest.raises(BackendError, match="not a remote target"):
        driver.replicate_to(VolumeRef("v"), BackendSpec("b", "file", {"path": "/"}), VolumeRef("v"))
    assert "secret" not in repr(Peer.parse("http://h:1", "secret-token"))


def test_the_plan_for_two_remote_targets(store: Store) -> None:
    """native first, stream ineligible (no stream-out or stream-in), via-store next."""
    a = Backend.of("a", RemoteDriver("http://127.0.0.1:9"), BackendSpec("a", "remote", {}))
    b_spec = BackendSpec("b", "remote", {"url": "http://127.0.0.1:10"})
    b = Backend.of("b", RemoteDriver("http://127.0.0.1:10"), b_spec)
    plan = plan_replicate(a, b, store, ReplicateRequest("vol", in_use=True))
    assert plan.eligible == ("native", "via-store")
    native, stream, via_store = plan.strategies
    assert native.reason == (
        "the source copies to the target itself, from a temporary snapshot; the volume stays in use"
    )
    assert stream.eligible is False and stream.reason == STREAM_REASON
    assert via_store.eligible is True
    unreachable = Backend.of("c", RemoteDriver("http://127.0.0.1:11"), BackendSpec("c", "remote"))
    plan = plan_replicate(a, unreachable, None, ReplicateRequest("vol"))
    assert plan.eligible == ()
    assert plan.strategies[0].reason == "the source cannot reach backend 'c' directly"


# -- end to end through the common algorithm ---------------------------------------------


def test_remote_to_remote_is_native_and_no_byte_crosses_the_manager(
    pair: tuple[Target, Target],
) -> None:
    """64 MiB, in use: a temporary snapshot goes target to target; the manager sees ~KB."""
    ta, tb = pair
    data = volume_data(64)
    ta.driver().write_volume_bytes("vol", data)
    tb.driver().write_volume_bytes("vol", b"the peer's old volume")
    a, b = backend("a", ta), backend("b", tb)
    ta.driver().write_volume_bytes("warm-up", os.urandom(MiB))
    replicate(a, b, ReplicateRequest("warm-up", in_use=True))  # imports, engine set-up

    wire_a, wire_b, (read0, written0) = (
        driver_of(a).wire_bytes,
        driver_of(b).wire_bytes,
        process_io(),
    )
    out = replicate(a, b, ReplicateRequest("vol", in_use=True, overwrite=True))
    read1, written1 = process_io()
    assert out.strategy == "native" and out.failed == ()
    assert out.bytes_through_manager == 0 and out.size == len(data)
    assert out.plan.strategies[1].reason == STREAM_REASON
    limit = len(data) / 100
    assert driver_of(a).wire_bytes - wire_a < limit
    assert driver_of(b).wire_bytes - wire_b < limit  # the manager never called b at all
    assert read1 - read0 < limit and written1 - written0 < limit
    assert driver_of(a).last_progress is not None  # answered as a progress stream

    assert tb.driver().volume_sha256("vol") == sha(data)
    assert ta.driver().list_snapshots("vol") == []  # the temporary snapshot is gone
    assert incoming(tb) == []
    for target in pair:
        assert "tok-a-5e1d0c9b" not in target.log_text()
        assert "tok-b-77f3a2c4" not in target.log_text()


def test_a_named_snapshot_is_replicated_not_the_changed_volume(
    pair: tuple[Target, Target],
) -> None:
    ta, tb = pair
    old, new = volume_data(8), os.urandom(8 * MiB)
    source = ta.driver()
    source.write_volume_bytes("vol", old)
    source.create_snapshot(VolumeRef("vol"), "s1")
    source.write_volume_bytes("vol", new)
    out = replicate(
        backend("a", ta),
        backend("b", tb),
        ReplicateRequest("vol", snapshot_id="s1", target_volume_id="copy", in_use=True),
    )
    assert out.strategy == "native" and out.snapshot_id == "s1"
    assert tb.driver().volume_sha256("copy") == sha(old)
    assert source.list_snapshots("vol") == [SnapshotRef("vol", "s1")]  # a named one is kept
    assert source.volume_sha256("vol") == sha(new)


def test_a_sparse_volume_sends_only_its_data(pair: tuple[Target, Target]) -> None:
    """1 GiB with 3 MiB of data (and 2 MiB of written zeros): 3 MiB are sent."""
    ta, tb = pair
    path = ta.directory / "sparse"
    with open(path, "wb") as f:
        f.truncate(1 << 30)
        for offset in (5 * MiB, 300 * MiB + 123, 1023 * MiB):
            f.seek(offset)
            f.write(os.urandom(MiB))
        f.seek(700 * MiB)
        f.write(bytes(2 * MiB))  # allocated, but all zeros: not sent
    done = ta.driver().replicate_to(VolumeRef("sparse"), spec("b", tb), VolumeRef("copy"))
    assert done.size == 1 << 30
    # 3 MiB, plus the 4 KiB block the unaligned MiB spills into (frames are cut at MiB lines)
    assert 3 * MiB <= done.bytes_sent <= 3 * MiB + 4096
    assert tb.driver().volume_sha256("copy") == ta.driver().volume_sha256("sparse")
    assert os.stat(tb.directory / "copy").st_blocks * 512 < 8 * MiB  # sparse on the peer too


def test_unknown_sources_are_not_found(pair: tuple[Target, Target]) -> None:
    ta, tb = pair
    with pytest.raises(VolumeNotFound):
        ta.driver().replicate_to(VolumeRef("nope"), spec("b", tb), VolumeRef("nope"))
    ta.driver().create_volume("vol", MiB)
    with pytest.raises(SnapshotNotFound):
        ta.driver().replicate_to(SnapshotRef("vol", "never"), spec("b", tb), VolumeRef("v"))


# -- failures ----------------------------------------------------------------------------


def test_a_refused_peer_token_falls_back_to_via_store(
    pair: tuple[Target, Target], store: Store
) -> None:
    """The peer refuses the token: its old volume stays; via-store then replicates."""
    ta, tb = pair
    data = volume_data(16)
    ta.driver().write_volume_bytes("vol", data)
    tb.driver().write_volume_bytes("vol", b"the peer's old volume")
    wrong = "wrong-token-9d8c7b6a"
    with pytest.raises(ConfigError, match="refused the token") as err:
        ta.driver().replicate_to(VolumeRef("vol"), spec("b", tb, token=wrong), VolumeRef("vol"))
    assert str(err.value).startswith(f"{ta.url}: replicate volume 'vol' to volume 'vol' of 'b': ")
    assert f"peer {tb.url}" in str(err.value) and wrong not in str(err.value)
    assert tb.driver().volume_sha256("vol") == sha(b"the peer's old volume")

    a, b = backend("a", ta), backend("b", tb, token=wrong)  # b's own driver has the right one
    out = replicate(a, b, ReplicateRequest("vol", in_use=True, overwrite=True), store=store)
    assert out.strategy == "via-store" and out.bytes_through_manager == 0
    [failed] = out.failed
    assert failed.strategy == "native"
    assert failed.error.startswith(f"ConfigError: {ta.url}: replicate snapshot 'pw-")
    assert f"peer {tb.url}: check the peer: the target refused the token" in failed.error
    assert wrong not in failed.error
    assert tb.driver().volume_sha256("vol") == sha(data)
    assert ta.driver().list_snapshots("vol") == []
    for target in pair:
        assert wrong not in target.log_text() and "tok-b-77f3a2c4" not in target.log_text()


@pytest.fixture
def transfer(pair: tuple[Target, Target]) -> Iterator[Callable[[], list[BaseException]]]:
    """Start a 64 MiB replication a -> b in a thread; return a function awaiting its outcome."""
    ta, tb = pair
    ta.driver().write_volume_bytes("vol", os.urandom(64 * MiB))
    tb.driver().write_volume_bytes("vol", b"the peer's old volume")
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            ta.driver(timeout=30).replicate_to(VolumeRef("vol"), spec("b", tb), VolumeRef("vol"))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: bool(incoming(tb)))  # the peer is writing its copy

    def finish() -> list[BaseException]:
        thread.join(15)
        assert not thread.is_alive()
        return outcome

    yield finish
    thread.join(15)


def test_a_peer_killed_during_the_transfer_keeps_its_old_volume(
    pair: tuple[Target, Target], transfer: Callable[[], list[BaseException]]
) -> None:
    ta, tb = pair
    tb.process.send_signal(signal.SIGSTOP)  # the copy stalls half-way ...
    time.sleep(0.2)
    tb.process.kill()  # ... and its target dies
    tb.process.wait(5)
    [error] = transfer()
    assert isinstance(error, TransientError), error
    assert str(error).startswith(f"{ta.url}: replicate volume 'vol' to volume 'vol' of 'b': ")
    assert f"peer {tb.url}" in str(error) and "tok-b-77f3a2c4" not in str(error)
    assert (tb.directory / "vol").read_bytes() == b"the peer's old volume"
    assert ta.driver().list_volumes() == [VolumeRef("vol")]  # the source lives on


def test_a_source_killed_during_the_transfer_makes_the_peer_discard_its_copy(
    pair: tuple[Target, Target], transfer: Callable[[], list[BaseException]]
) -> None:
    ta, tb = pair
    ta.process.kill()
    [error] = transfer()
    assert isinstance(error, TransientError), error
    wait_for(lambda: incoming(tb) == [])  # aborted: the partial copy is gone
    assert tb.driver().volume_sha256("vol") == sha(b"the peer's old volume")
    wait_for(lambda: "the sender went away" in tb.log_text())  # logged after the abort


def test_a_manager_going_away_cancels_the_copy_and_the_peer_discards_it(
    pair: tuple[Target, Target],
) -> None:
    """The manager's connection drops mid-copy: the source stops, the peer aborts."""
    ta, tb = pair
    ta.driver().write_volume_bytes("vol", os.urandom(64 * MiB))
    tb.driver().write_volume_bytes("vol", b"the peer's old volume")
    parts = urlsplit(ta.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    body = {
        "source": {"volume_id": "vol", "snapshot_id": None},
        "peer": {"name": "b", "url": tb.url, "token": tb.token, "timeout": None},
        "target": {"volume_id": "vol"},
    }
    conn.request(
        "POST",
        "/v1/replicate",
        body=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ta.token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    assert b"progress" in response.readline()
    wait_for(lambda: bool(incoming(tb)))
    tb.process.send_signal(signal.SIGSTOP)  # hold the copy half-way while the manager leaves
    response.close()
    conn.close()
    wait_for(lambda: "the manager went away" in ta.log_text())
    tb.process.send_signal(signal.SIGCONT)
    wait_for(lambda: incoming(tb) == [])
    assert tb.driver().volume_sha256("vol") == sha(b"the peer's old volume")
    # The target logs the end of the request after it has removed the partial copy.
    wait_for(lambda: "the sender went away" in tb.log_text())


# -- the receive endpoint itself ------------------------------------------------------


def frames(data: bytes, size: int, piece: int = 4096) -> list[bytes]:
    """The frames of `data` written at offset 0 of a `size`-byte volume, end frame last."""
    out, listing = [], hashlib.sha256()
    for offset in range(0, len(data), piece):
        part = data[offset : offset + piece]
        header = FRAME_HEADER.pack(offset, len(part), hashlib.sha256(part).digest())
        listing.update(header)
        out.append(header + part)
    return [*out, FRAME_HEADER.pack(len(out), 0, listing.digest())]


def receive(
    target: Target, volume_id: str, size: int, body: bytes, chunked: bool = False
) -> tuple[int, bytes]:
    """PUT the frames `body` to the target's receive endpoint; (status, JSON answer)."""
    parts = urlsplit(target.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    headers = {"Authorization": f"Bearer {target.token}", "Connection": "close"}
    try:
        path = f"/v1/volumes/{volume_id}/receive?size={size}"
        if chunked:
            pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
            conn.request("PUT", path, body=iter(pieces), headers=headers, encode_chunked=True)
        else:
            conn.request("PUT", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_receive_checks_every_frame_and_the_end_frame(pair: tuple[Target, Target]) -> None:
    """Damaged, missing, extra or misordered frames are refused; the volume stays."""
    _, tb = pair
    tb.driver().write_volume_bytes("vol", b"old")
    data = os.urandom(20_000)
    good = frames(data, 64 * 1024)

    damaged = list(good)
    damaged[2] = damaged[2][:-1] + bytes([damaged[2][-1] ^ 1])
    status, answer = receive(tb, "vol", 64 * 1024, b"".join(damaged))
    assert status == 422 and b'"type":"CorruptionError"' in answer and b'"offset":8192' in answer

    lost = good[:1] + good[2:]  # offsets still ascend, but the end frame counts 5
    status, answer = receive(tb, "vol", 64 * 1024, b"".join(lost))
    assert status == 500 and b"a frame was lost or changed" in answer

    for body, why in (
        (b"".join(good[:-1]), b"the request body ended"),  # no end frame
        (b"".join(good) + b"x", b"data after the end frame"),
        (b"".join([good[1], good[0], *good[2:]]), b"overlaps the one before"),
    ):
        status, answer = receive(tb, "vol", 64 * 1024, body)
        assert status == 400 and why in answer, answer
    status, answer = receive(tb, "vol", 4096, b"".join(good))
    assert status == 400 and b"outside the 4096-byte volume" in answer
    assert tb.driver().volume_sha256("vol") == sha(b"old")

    status, answer = receive(tb, "vol", 64 * 1024, b"".join(good))  # with Content-Length
    assert status == 200 and b'"frames":5' in answer
    assert tb.driver().volume_sha256("vol") == sha(data + bytes(64 * 1024 - len(data)))

    tb.driver().write_volume_bytes("vol", b"old")
    status, answer = receive(tb, "vol", 64 * 1024, b"".join(damaged), chunked=True)
    assert status == 422
    status, answer = receive(tb, "vol", 64 * 1024, b"".join(good), chunked=True)
    assert status == 200 and b'"frames":5' in answer
    assert incoming(tb) == []
