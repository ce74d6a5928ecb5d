"""The attribute registry: register under attributes, search, rank, explain misses."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from taskflow import engines, task
from taskflow.patterns import linear_flow
from zope.interface import implementer

from pieceworks.protocols import (
    Compress,
    InvalidDriver,
    ISnapshot,
    NotFound,
    Snapshot,
    SnapshotRef,
    VolumeRef,
)
from pieceworks.registry import Kind, NoMatch, Registry


class Echo(task.Task):
    """A real TaskFlow task: returns the word it was built with."""

    def __init__(self, word: str = "echo", **kwargs: object) -> None:
        super().__init__(name=f"echo-{word}", provides=f"said-{word}")
        self.word = word

    def execute(self) -> str:
        return self.word


class ISnapshotTree(ISnapshot):
    """An extension of snapshot (new methods go in a new interface)."""

    def list_snapshots(volume: VolumeRef) -> Sequence[SnapshotRef]:
        """List a volume's snapshots."""


class SnapDriver(Snapshot, Compress):
    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        return SnapshotRef(volume.volume_id, snapshot_id)

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        pass

    def compression_codecs(self) -> Sequence[str]:
        return ("zstd",)


@implementer(ISnapshotTree)
class TreeDriver(SnapDriver):
    def list_snapshots(self, volume: VolumeRef) -> Sequence[SnapshotRef]:
        return ()


def test_all_any_and_none_of() -> None:
    """all_of needs every attribute, any_of at least one, none_of excludes."""
    reg = Registry()
    a = reg.register(Echo("a"), provides=["fast-backup", "live-backup"])
    b = reg.register(Echo("b"), provides=["slow-backup"])
    c = reg.register(Echo("c"), provides=["fast-backup", "incremental-backup"])
    assert reg.find(["fast-backup"]) == [a, c]
    assert reg.find(["fast-backup", "live-backup"]) == [a]
    assert reg.find(any_of=["live-backup", "slow-backup"]) == [a, b]
    assert reg.find(["fast-backup"], none_of=["live-backup"]) == [c]
    assert reg.find(["fast-backup"], any_of=["incremental-backup", "slow-backup"]) == [c]


def test_ranking_is_preference_then_registration_order() -> None:
    """Higher preference first; equal preferences keep registration order."""
    reg = Registry()
    first = reg.register(Echo("1"), provides=["x"])
    second = reg.register(Echo("2"), provides=["x"])
    preferred = reg.register(Echo("3"), provides=["x"], preference=5)
    shunned = reg.register(Echo("4"), provides=["x"], preference=-1)
    assert reg.find(["x"]) == [preferred, first, second, shunned]
    assert reg.find_one(["x"]) is preferred
    assert list(reg) == [preferred, first, second, shunned]


def test_a_base_capability_finds_providers_of_its_extensions() -> None:
    """Asking for snapshot finds a driver that provides an extension of it."""
    reg = Registry()
    tree = reg.register_driver(TreeDriver(), name="tree")
    plain = reg.register_driver(SnapDriver(), name="plain")
    assert reg.find([ISnapshot]) == [tree, plain]
    assert reg.find([ISnapshotTree]) == [tree]
    assert reg.find(["capability:snapshot", "capability:compress"], kind=Kind.DRIVER) == [
        tree,
        plain,
    ]
    assert reg.find([ISnapshot], none_of=[ISnapshotTree]) == [plain]


def test_no_match_names_the_query_and_the_closest_registrations() -> None:
    """NotFound says what was asked and what each near miss lacks."""
    reg = Registry()
    reg.register(Echo("a"), provides=["fast-backup"], name="file-fast")
    reg.register(Echo("b"), provides=["fast-backup", "incremental-backup"], name="file-incr")
    reg.register(Echo("c"), provides=["other"], name="unrelated")
    with pytest.raises(NotFound) as err:
        reg.find(["fast-backup", "live-backup"], none_of=["incremental-backup"])
    message = str(err.value)
    assert message.startswith(
        "no registration matches all of ['fast-backup', 'live-backup'],"
        " none of ['incremental-backup']; closest: "
    )
    assert "'file-fast' (task) lacks ['live-backup']" in message
    assert (
        "'file-incr' (task) lacks ['live-backup'], has excluded ['incremental-backup']" in message
    )
    assert isinstance(err.value, NoMatch)
    assert [r.name for r in err.value.closest] == ["file-fast", "file-incr"]


def test_no_match_on_an_empty_registry() -> None:
    """An empty registry says so rather than listing nothing."""
    with pytest.raises(NoMatch, match="the registry is empty"):
        Registry().find(["live-backup"])


def test_kind_and_backend_narrow_a_search() -> None:
    """A manager can ask for one backend's pieces, or only drivers."""
    reg = Registry()
    lab = reg.register(Echo("a"), provides=["fast-backup"], backend="lab")
    reg.register(Echo("b"), provides=["fast-backup"], backend="prod")
    assert reg.find(["fast-backup"], backend="lab") == [lab]
    with pytest.raises(NoMatch, match="belongs to backend 'lab'"):
        reg.find(["fast-backup"], backend="qa")
    with pytest.raises(NoMatch, match="is a task"):
        reg.find(["fast-backup"], kind=Kind.DRIVER)


def test_unregister_removes_from_every_index() -> None:
    """After unregistering, a registration is found under no attribute."""
    reg = Registry()
    a = reg.register(Echo("a"), provides=["x", "y"])
    b = reg.register(Echo("b"), provides=["x"])
    reg.unregister(a)
    reg.unregister(a)
    assert reg.find(["x"]) == [b]
    with pytest.raises(NoMatch):
        reg.find(["y"])
    assert len(reg) == 1


def test_build_returns_fresh_atoms_from_factories_and_classes() -> None:
    """Factories and Task classes build a new object per call; instances are copied."""
    reg = Registry()
    instance = Echo("same")
    by_instance = reg.register(instance, provides=["i"])
    by_class = reg.register(Echo, provides=["c"])

    def make_echo(word: str) -> Echo:
        return Echo(word)

    by_factory = reg.register(make_echo, provides=["f"], name="echo-factory")
    assert by_instance.build() is not instance
    assert by_class.kind is Kind.TASK_CLASS and by_factory.kind is Kind.FACTORY
    one, two = by_factory.build(word="x"), by_factory.build(word="x")
    assert one is not two and isinstance(one, Echo)
    assert isinstance(by_class.build(word="k"), Echo)
    with pytest.raises(TypeError, match="task instance: it takes no build arguments"):
        by_instance.build(word="x")


def test_build_refuses_a_factory_that_returns_no_atom() -> None:
    """A factory must return a TaskFlow task or flow; anything else is named."""
    reg = Registry()

    def not_a_factory() -> object:
        return 42

    bad = reg.register(not_a_factory, provides=["x"], name="bad")
    with pytest.raises(TypeError, match="factory of registration 'bad' returned int"):
        bad.build()


def test_registering_nonsense_is_refused() -> None:
    """Only tasks, flows, Task classes and factories register; attributes are checked."""
    reg = Registry()
    with pytest.raises(TypeError, match="cannot register 42"):
        reg.register(42, provides=["x"])
    with pytest.raises(TypeError, match="non-empty string tag"):
        reg.register(Echo(), provides=[""])
    with pytest.raises(ValueError, match="provides no attribute"):
        reg.register(Echo(), provides=[])
    with pytest.raises(ValueError, match="needs at least one attribute"):
        reg.find()


def test_register_driver_verifies_capabilities() -> None:
    """A driver that claims a capability it lacks is refused at registration."""

    @implementer(ISnapshot)
    class Half:  # type: ignore[misc]  # deliberately incomplete
        def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
            raise NotImplementedError

    reg = Registry()
    with pytest.raises(InvalidDriver, match="driver 'half' \\(Half\\) capability 'snapshot'"):
        reg.register_driver(Half(), name="half")
    assert len(reg) == 0


def test_found_pieces_run_inside_a_larger_flow() -> None:
    """What a search returns is added to a manager's own flow and runs with an engine."""
    reg = Registry()
    reg.register(Echo, provides=["greet"])
    flow = linear_flow.Flow("manager")
    for found in reg.find(["greet"]):
        flow.add(found.build(word="hello"))
    assert engines.run(flow)["said-hello"] == "hello"


def test_concurrent_registration_and_search_are_consistent() -> None:
    """Many threads registering and searching at once lose nothing and never fail."""
    reg = Registry()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                reg.register(Echo(f"{n}-{i}"), provides=["shared", f"t{n}"])
                assert len(reg.find(["shared", f"t{n}"])) == i + 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = reg.find(["shared"])
    assert len(found) == 1600
    assert [r.order for r in found] == sorted(r.order for r in found)


def test_result_cache_is_invalidated_by_every_change() -> None:
    """A cached answer never outlives a registration or an unregistration."""
    for cache_size in (0, 1, 1024):
        reg = Registry(cache_size=cache_size)
        a = reg.register(Echo("a"), provides=["x"])
        assert reg.find(["x"]) == [a]
        b = reg.register(Echo("b"), provides=["x"], preference=1)
        assert reg.find(["x"]) == [b, a]
        reg.unregister(b)
        assert reg.find(["x"]) == [a]
        result = reg.find(["x"])
        result.clear()  # callers get their own list
        assert reg.find(["x"]) == [a]
