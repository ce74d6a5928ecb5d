"""The POSIX object store on real files: contract, atomicity, races, listing."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from pieceworks.drivers import _files
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import (
    BackendError,
    ConfigError,
    InvalidName,
    IObjectStore,
    IStoredSizes,
    ObjectInfo,
    ObjectNotFound,
    verify_driver,
)
from pieceworks.protocols.deferred_sync import IDeferredSync
from tests.support.object_stores import KEYS, check_missing_objects


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> PosixStore:
    return PosixStore(root)


def temp_files(root: Path) -> list[Path]:
    return list(root.rglob(".tmp-*"))


# -- configuration and capability -------------------------------------------------


def test_unknown_options_are_rejected_by_name(root: Path) -> None:
    """A misspelt option is a ConfigError that names it."""
    with pytest.raises(ConfigError, match="durabel"):
        PosixStore(root, durabel=False)


def test_durable_accepts_config_strings(root: Path) -> None:
    """Options read from a config file arrive as strings; nonsense is a ConfigError."""
    assert "durable=False" in repr(PosixStore(root, durable="false"))
    assert "durable=True" in repr(PosixStore(root, durable="Yes"))
    with pytest.raises(ConfigError, match="maybe"):
        PosixStore(root, durable="maybe")


def test_directory_is_created(root: Path) -> None:
    """A missing store directory (and its parents) is created."""
    PosixStore(root / "deep" / "er")
    assert (root / "deep" / "er").is_dir()


def test_capability_verifies(store: PosixStore) -> None:
    """zope.interface accepts it; verify_driver: object-store, stored-sizes, deferred-sync."""
    assert verifyObject(IObjectStore, store)
    assert verifyObject(IDeferredSync, store)
    assert set(verify_driver(store, "x")) == {IStoredSizes, IObjectStore, IDeferredSync}


# -- the object contract ----------------------------------------------------------


@pytest.mark.parametrize("durable", [True, False])
def test_put_get_head_delete(root: Path, durable: bool) -> None:
    """Objects round trip; head reports size and mtime; delete is idempotent."""
    store = PosixStore(root, durable=durable)
    before = time.time()
    store.put("chunks/ab/abcd", b"payload")
    store.put("manifest", memoryview(b"m" * 10))
    assert store.get("chunks/ab/abcd") == b"payload"
    info = store.head("chunks/ab/abcd")
    assert info == ObjectInfo("chunks/ab/abcd", 7, info.modified)
    assert before - 2 <= info.modified <= time.time() + 2
    assert store.exists("manifest")
    store.delete("manifest")
    store.delete("manifest")
    assert not store.exists("manifest")
    assert (root / "chunks" / "ab" / "abcd").read_bytes() == b"payload"


def test_put_replaces(store: PosixStore) -> None:
    """A second put of the same key replaces the object whole."""
    store.put("k", b"long old content")
    store.put("k", b"new")
    assert store.get("k") == b"new"


def test_missing_objects_raise_object_not_found(store: PosixStore) -> None:
    """get and head of an absent key (or of a "directory" key) raise ObjectNotFound."""
    check_missing_objects(store, ("absent", "dir", "dir/obj/below", "no/such/key"))


@pytest.mark.parametrize("bad", ["", "/abs", "../up", "a/../b", "a//b", "a/./b", "a/", ".tmp-1"])
def test_bad_keys_are_invalid_names(store: PosixStore, bad: str) -> None:
    """Keys that could escape the root or hit a temp file are refused."""
    calls: list[Callable[[], object]] = [
        lambda: store.put(bad, b"x"),
        lambda: store.put_if_absent(bad, b"x"),
        lambda: store.get(bad),
        lambda: store.head(bad),
        lambda: store.exists(bad),
        lambda: store.delete(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidName):
            call()


def test_failed_put_leaves_no_temp_file(store: PosixStore, root: Path) -> None:
    """A put that cannot land (the key is a directory of other keys) leaves nothing behind."""
    store.put("d/x", b"x")
    with pytest.raises(BackendError):
        store.put("d", b"y")
    with pytest.raises(BackendError):
        store.put("d/x/y", b"z")
    assert temp_files(root) == []
    assert list(store.list("")) == ["d/x"]


def test_put_is_atomic_for_concurrent_readers(store: PosixStore) -> None:
    """Readers racing a writer see the whole old or whole new object, never a part,
    and list never shows the writer's temporary files."""
    old, new = b"o" * (4 << 20), b"n" * (4 << 20)
    store.put("obj", old)
    stop = threading.Event()
    torn: list[int] = []
    listings: set[tuple[str, ...]] = set()
    reads = 0

    def read() -> None:
        nonlocal reads
        while not stop.is_set():
            data = store.get("obj")
            if data not in (old, new):
                torn.append(len(data))
            listings.add(tuple(store.list("")))
            reads += 1

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            store.put("obj", new if i % 2 else old)
    finally:
        stop.set()
        reader.join()
    assert reads > 0
    assert torn == []
    assert listings == {("obj",)}


def race_put_if_absent(store: PosixStore, key: str) -> dict[bytes, bool]:
    """Two threads released together call put_if_absent(key) with different bytes."""
    barrier = threading.Barrier(2)
    results: dict[bytes, bool] = {}

    def write(data: bytes) -> None:
        barrier.wait()
        results[data] = store.put_if_absent(key, data)

    threads = [threading.Thread(target=write, args=(d,)) for d in (b"first", b"second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_put_if_absent_race_has_one_winner(store: PosixStore, root: Path) -> None:
    """Two threads writing the same new key: exactly one wins and its bytes are kept."""
    for round_ in range(30):
        key = f"chunks/{round_:02d}/obj"
        results = race_put_if_absent(store, key)
        winners = [data for data, won in results.items() if won]
        assert len(results) == 2
        assert len(winners) == 1, results
        assert store.get(key) == winners[0]
    assert not store.put_if_absent("chunks/00/obj", b"late")
    assert temp_files(root) == []


# -- listing ---------------------------------------------------------------------------


def test_list_is_sorted_as_strings(store: PosixStore) -> None:
    """Keys come out in plain string order, even where '-' and '.' sort before '/'."""
    for key in reversed(KEYS):
        store.put(key, key.encode())
    assert list(store.list("")) == sorted(KEYS)


@pytest.mark.parametrize(
    "prefix",
    ["a", "a/", "a/b", "a/b.", "ab", "chunks/ab/", "chunks/a", "c", "zzz", "no/such/", "../"],
)
def test_list_filters_by_prefix(store: PosixStore, prefix: str) -> None:
    """list(prefix) yields exactly the keys that start with prefix, sorted."""
    for key in KEYS:
        store.put(key, b"")
    assert list(store.list(prefix)) == sorted(k for k in KEYS if k.startswith(prefix))


def test_list_skips_temp_and_foreign_files(store: PosixStore, root: Path) -> None:
    """Temporary files, names that are not keys, and links to no file are never listed."""
    store.put("chunks/ab/real", b"x")
    (root / "chunks" / "ab" / ".tmp-0123").write_bytes(b"partial")
    (root / "chunks" / "ab" / "not a key").write_bytes(b"?")
    (root / "chunks" / "ab" / "dangling").symlink_to(root / "chunks" / "ab" / "nothing")
    (root / "chunks" / "ab" / "folder").symlink_to(root / "chunks")
    assert list(store.list("")) == ["chunks/ab/real"]
    assert list(store.list("chunks/ab/")) == ["chunks/ab/real"]


def test_an_object_that_is_a_link_to_a_file_is_listed_as_it_is_read(
    tmp_path: Path, store: PosixStore, root: Path
) -> None:
    """A manifest put back as a link to a replica's copy was read by `get` (show, restore)
    but left out of `list`, so gc counted its chunks as unreferenced and deleted them: the
    backup `show` displayed could no longer be restored. What `get` reads, `list` lists."""
    replica = tmp_path / "replica.json"
    replica.write_bytes(b"{}")
    store.put("manifests/bk-1.json", b"{}")
    (root / "manifests" / "bk-2.json").symlink_to(replica)
    assert store.get("manifests/bk-2.json") == b"{}" and store.exists("manifests/bk-2.json")
    assert list(store.list("manifests/")) == ["manifests/bk-1.json", "manifests/bk-2.json"]


# -- deferred-sync ------------------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the store fsyncs (the real fsync still runs), in order."""
    done: list[str] = []
    real_file, real_dir = _files.fsync_file, _files.fsync_dir

    def file(path: str) -> None:
        real_file(path)
        done.append(path)

    def directory(path: str) -> None:
        real_dir(path)
        done.append(path + "/")

    monkeypatch.setattr(_files, "fsync_file", file)
    monkeypatch.setattr(_files, "fsync_dir", directory)
    return done


def test_put_unsynced_is_visible_at_once_and_waits_for_no_fsync(
    store: PosixStore, root: Path, fsyncs: list[str]
) -> None:
    """put_unsynced: the whole object is readable at once, no temporary file, no fsync."""
    store.put_unsynced("chunks/ab/one", b"first")
    store.put_unsynced("chunks/ab/one", b"second")
    store.put_unsynced("chunks/cd/two", b"2" * 100_000)
    assert store.get("chunks/ab/one") == b"second"
    assert store.get("chunks/cd/two") == b"2" * 100_000
    assert not temp_files(root) and fsyncs == []


def test_sync_fsyncs_each_file_then_every_directory_up_to_the_root(
    store: PosixStore, root: Path, fsyncs: list[str]
) -> None:
    """sync: one fsync per existing file, then each directory up to the root; no missing ones."""
    for key in ("chunks/ab/one", "chunks/ab/two", "chunks/cd/three"):
        store.put_unsynced(key, key.encode())
    store.sync(["chunks/ab/one", "chunks/cd/three", "chunks/ab/one", "chunks/ef/missing"])
    real = str(root.resolve())
    files = [p for p in fsyncs if not p.endswith("/")]
    directories = [p for p in fsyncs if p.endswith("/")]
    assert sorted(files) == [f"{real}/chunks/ab/one", f"{real}/chunks/cd/three"]
    assert sorted(directories) == [
        f"{real}/",
        f"{real}/chunks/",
        f"{real}/chunks/ab/",
        f"{real}/chunks/cd/",
    ]
    assert fsyncs.index(directories[0]) > max(fsyncs.index(f) for f in files)  # files first
    store.sync([])
    assert len(fsyncs) == 6


def test_sync_memory_does_not_grow_with_the_number_of_keys(
    store: PosixStore, root: Path, fsyncs: list[str]
) -> None:
    """A backup of 1 TiB in 4 MiB chunks syncs 262,144 keys at its end: sync reads them a
    batch at a time (it held a path and a future per key: 2.6 KiB each, 215 MiB peak RSS
    for a 65,536-chunk backup). Files in every batch are still synced before any directory."""
    spread = [f"chunks/{i % 256:02x}/{i:064x}" for i in range(0, 20_000, 3_989)]
    for key in spread:
        store.put_unsynced(key, b"x")
    keys = (f"chunks/{i % 256:02x}/{i:064x}" for i in range(20_000))  # mostly missing
    tracemalloc.start()
    try:
        store.sync(keys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20, f"sync of 20,000 keys peaked at {peak / 2**20:.1f} MiB"
    real = str(root.resolve())
    files = [p for p in fsyncs if not p.endswith("/")]
    assert sorted(files) == sorted(f"{real}/{key}" for key in spread)
    first_directory = min(i for i, p in enumerate(fsyncs) if p.endswith("/"))
    assert first_directory == len(files)  # every file first, whichever batch it was in


def test_sync_of_a_scratch_store_does_nothing(root: Path, fsyncs: list[str]) -> None:
    """durable=False: neither put_unsynced nor sync fsyncs."""
    scratch = PosixStore(root, durable=False)
    scratch.put_unsynced("chunks/ab/one", b"x")
    scratch.sync(["chunks/ab/one"])
    assert fsyncs == [] and scratch.get("chunks/ab/one") == b"x"


def test_sync_refuses_bad_keys(store: PosixStore) -> None:
    """A malformed key is InvalidName, as for every other method."""
    with pytest.raises(InvalidName):
        store.sync(["../escape"])


# -- symbolic links and unreadable objects -----------------------------------------


@pytest.mark.parametrize("folder", ["chunks", "manifests", "leases", "locks"])
def test_a_symlinked_top_level_folder_is_refused_with_its_path(
    tmp_path: Path, root: Path, store: PosixStore, folder: str
) -> None:
    """Nothing is read, written, listed or deleted through a linked folder of the store."""
    outside = tmp_path / "outside"
    (outside / "ab").mkdir(parents=True)
    (outside / "ab" / "precious").write_bytes(b"not the store's")
    (root / folder).symlink_to(outside)
    where = str(root / folder)
    for call in (
        lambda: store.put(f"{folder}/ab/new", b"x"),
        lambda: store.get(f"{folder}/ab/precious"),
        lambda: store.head(f"{folder}/ab/precious"),
        lambda: store.delete(f"{folder}/ab/precious"),
        lambda: list(store.list(f"{folder}/")),
        lambda: store.sizes([f"{folder}/ab/precious"]),
    ):
        with pytest.raises(BackendError, match=f"{where} is a symbolic link"):
            call()
    assert (outside / "ab" / "precious").read_bytes() == b"not the store's"
    assert sorted(p.name for p in (outside / "ab").iterdir()) == ["precious"]


def test_gc_never_deletes_outside_the_store_through_a_symlinked_chunks(
    tmp_path: Path, root: Path, store: PosixStore
) -> None:
    """The finding: gc deleted files outside the store through a symlinked chunks/."""
    from pieceworks.common_algorithms.gc.collection import collect_garbage  # noqa: PLC0415 (test of gc)

    outside = tmp_path / "elsewhere"
    (outside / "ab").mkdir(parents=True)
    victim = outside / "ab" / ("ab" * 32)
    victim.write_bytes(b"someone else's file")
    (root / "chunks").symlink_to(outside)
    with pytest.raises(BackendError, match="chunks is a symbolic link"):
        collect_garbage(store)
    assert victim.read_bytes() == b"someone else's file"


def test_a_fifo_or_a_folder_under_a_key_is_no_object_and_never_blocks(
    store: PosixStore, root: Path
) -> None:
    """A FIFO found under a chunk's key made `get` wait for a writer forever (a restore or
    verify hung, Ctrl-C and SIGTERM could not stop it): it is no object, as for `head`."""
    store.put("chunks/ab/real", b"x")
    os.mkfifo(root / "chunks" / "ab" / "fifo")
    (root / "chunks" / "ab" / "folder").mkdir()
    for key in ("chunks/ab/fifo", "chunks/ab/folder"):
        raised: list[BaseException] = []

        def get(key: str = key, raised: list[BaseException] = raised) -> None:
            try:
                store.get(key)
            except BaseException as exc:
                raised.append(exc)

        reader = threading.Thread(target=get, daemon=True)
        reader.start()
        reader.join(timeout=5)
        if reader.is_alive():  # let the blocked open go before failing
            with open(root / key, "wb"):
                pass
            reader.join(timeout=5)
            pytest.fail(f"get({key!r}) blocked")
        assert len(raised) == 1 and isinstance(raised[0], ObjectNotFound), raised
        assert key in str(raised[0])
        assert not store.exists(key)
    assert store.get("chunks/ab/real") == b"x"
    assert list(store.list("chunks/")) == ["chunks/ab/real"]


def test_the_root_itself_may_be_a_link(tmp_path: Path) -> None:
    """Only the store's own folders are refused: a root reached by a link is resolved once."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    linked = PosixStore(tmp_path / "link", durable=False)
    linked.put("chunks/ab/x", b"1")
    assert (real / "chunks" / "ab" / "x").read_bytes() == b"1"


def test_sizes_reports_present_objects_and_leaves_out_the_rest(store: PosixStore) -> None:
    """One stat per key; a missing key, a directory or a malformed key's neighbours."""
    assert verifyObject(IStoredSizes, store)
    store.put("chunks/ab/one", b"123")
    store.put("chunks/ab/two/x", b"")
    assert store.sizes(["chunks/ab/one", "chunks/ab/two", "chunks/ab/none"]) == {"chunks/ab/one": 3}
    with pytest.raises(InvalidName):
        store.sizes(["/etc/passwd"])


@pytest.mark.parametrize(
    ("file", "prefix"),
    [("manifests", "manifests/"), ("chunks/ab", "chunks/ab/"), ("runs", "runs/sub/x")],
)
def test_listing_a_folder_that_is_a_file_is_an_error_naming_it(
    store: PosixStore, root: Path, file: str, prefix: str
) -> None:
    """``manifests`` replaced by a file listed as empty (NotADirectoryError taken for a
    missing folder): `gc` then saw no backup and removed every chunk of the store."""
    store.put("chunks/cd/kept", b"x")
    (root / file).write_bytes(b"in the way")
    listed = root / prefix.rpartition("/")[0]
    with pytest.raises(BackendError, match=f"{listed}: not a directory .*layout is damaged"):
        list(store.list(prefix))
    assert list(store.list("nosuch/")) == []  # a missing folder holds no key
