"""Registering a driver verifies every capability it claims, both declaration styles."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from zope.interface import implementer

from pieceworks.protocols import (
    AllocatedExtents,
    Compress,
    Extent,
    ICompress,
    InvalidDriver,
    ISnapshot,
    IStreamOut,
    Snapshot,
    SnapshotRef,
    Source,
    StreamOut,
    VolumeReader,
    VolumeRef,
    capabilities_of,
    driver_problems,
    verify_driver,
)


class SubclassDriver(Snapshot, Compress):
    """Declares snapshot and compress by subclassing the base classes."""

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        return SnapshotRef(volume.volume_id, snapshot_id)

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        pass

    def compression_codecs(self) -> Sequence[str]:
        return ("zstd",)


@implementer(ISnapshot, ICompress)
class ImplementerDriver:
    """Declares the same two capabilities with @implementer only."""

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef:
        return SnapshotRef(volume.volume_id, snapshot_id)

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        pass

    def compression_codecs(self) -> Sequence[str]:
        return ("zstd",)


@pytest.mark.parametrize("driver", [SubclassDriver(), ImplementerDriver()])
def test_both_declaration_styles_verify(driver: object) -> None:
    """A subclassing driver and an @implementer driver are equally first-class."""
    assert set(verify_driver(driver, "lab")) == {ISnapshot, ICompress}
    assert set(verify_driver(type(driver), "lab")) == {ISnapshot, ICompress}


def test_missing_and_mismatched_members_are_all_named() -> None:
    """One message names the driver, each broken capability and each member."""

    @implementer(ISnapshot, IStreamOut, ICompress)
    class Broken:  # type: ignore[misc]  # deliberately broken: mypy catches it too
        def create_snapshot(self, volume: VolumeRef) -> SnapshotRef:  # type: ignore[override]
            raise NotImplementedError

        def compression_codecs(self) -> Sequence[str]:
            return ()

    with pytest.raises(InvalidDriver) as err:
        verify_driver(Broken(), "lab")
    message = str(err.value)
    assert message.startswith("driver 'lab' (Broken) ")
    assert "capability 'snapshot' (ISnapshot)" in message
    assert "missing delete_snapshot" in message
    assert "create_snapshot:" in message and "argument" in message
    assert "capability 'stream-out' (IStreamOut): missing open_read" in message
    assert "'compress'" not in message


def test_a_driver_claiming_nothing_is_refused() -> None:
    """An object that provides no capability cannot be registered as a driver."""
    with pytest.raises(InvalidDriver, match="driver 'x' \\(object\\) provides no capability"):
        verify_driver(object(), "x")


def test_extension_interfaces_count_as_their_base_capability() -> None:
    """A driver providing an extension of snapshot also provides snapshot."""

    class ISnapshotTree(ISnapshot):
        def list_snapshots(volume: VolumeRef) -> Sequence[SnapshotRef]:
            """List them."""

    @implementer(ISnapshotTree)
    class TreeDriver(SubclassDriver):
        def list_snapshots(self, volume: VolumeRef) -> Sequence[SnapshotRef]:
            return ()

    caps = capabilities_of(TreeDriver())
    assert ISnapshotTree in caps and ISnapshot in caps
    verify_driver(TreeDriver(), "tree")


# -- as strict as mypy-zope: annotations, async, abstract classes -----------------------


class AsyncStreamOut(StreamOut):
    """open_read is a coroutine function: its caller would get a coroutine."""

    async def open_read(self, source: Source) -> VolumeReader:  # type: ignore[override]
        raise NotImplementedError


class IntParameter(AllocatedExtents):
    """allocated_extents takes an int where the interface passes a Source."""

    def allocated_extents(self, source: int) -> Sequence[Extent]:  # type: ignore[override]
        return []


class NarrowParameter(AllocatedExtents):
    """allocated_extents takes only volumes, but snapshots are passed too."""

    def allocated_extents(self, source: VolumeRef) -> Sequence[Extent]:  # type: ignore[override]
        return []


class StrReturn(AllocatedExtents):
    """allocated_extents returns a str (a Sequence, but of str, not Extent)."""

    def allocated_extents(self, source: Source) -> str:  # type: ignore[override]
        return ""


class OptionalReturn(Snapshot):
    """create_snapshot may return None where a SnapshotRef is promised."""

    def create_snapshot(self, volume: VolumeRef, snapshot_id: str) -> SnapshotRef | None:  # type: ignore[override]
        return None

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        pass


class AbstractLeft(Snapshot, StreamOut):
    """Subclasses Snapshot but implements neither of its methods."""

    def open_read(self, source: Source) -> VolumeReader:
        raise NotImplementedError


class WiderTypes(AllocatedExtents):
    """Wider parameters and narrower returns than the interface's are fine, as for mypy."""

    def allocated_extents(self, source: object) -> list[Extent]:
        return []


class Unannotated(AllocatedExtents):
    """No annotations: Any, as for mypy (its --strict flags them, not mypy-zope)."""

    def allocated_extents(self, source):  # type: ignore[no-untyped-def]
        return []


@pytest.mark.parametrize(
    ("driver", "capability", "problem"),
    [
        (
            AsyncStreamOut,
            "stream-out",
            "open_read: is 'async def', but IStreamOut.open_read is synchronous",
        ),
        (
            IntParameter,
            "allocated-extents",
            "parameter 'source' is annotated int, but the interface passes VolumeRef | SnapshotRef",
        ),
        (
            NarrowParameter,
            "allocated-extents",
            "parameter 'source' is annotated VolumeRef, but the interface passes"
            " VolumeRef | SnapshotRef",
        ),
        (
            StrReturn,
            "allocated-extents",
            "allocated_extents: returns str, but the interface promises Sequence[Extent]",
        ),
        (
            OptionalReturn,
            "snapshot",
            "create_snapshot: returns SnapshotRef | None, but the interface promises SnapshotRef",
        ),
        (
            AbstractLeft,
            "snapshot",
            "create_snapshot: abstract (not implemented), so the class cannot be instantiated",
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_run_time_check_catches_what_mypy_zope_catches(
    driver: type, capability: str, problem: str
) -> None:
    """Each break is refused with InvalidDriver; `problems` names the capability and member."""
    with pytest.raises(InvalidDriver) as err:
        verify_driver(driver, "lab")
    assert capability in err.value.problems
    assert any(problem in p for p in err.value.problems[capability]), err.value.problems
    assert problem in str(err.value)


def test_instances_are_checked_for_annotations_and_async_too() -> None:
    """`Backend.of` verifies instances: their class's signatures count."""
    with pytest.raises(InvalidDriver) as err:
        verify_driver(IntParameter(), "lab")
    assert list(err.value.problems) == ["allocated-extents"]


@pytest.mark.parametrize("driver", [WiderTypes, Unannotated, SubclassDriver, ImplementerDriver])
def test_compatible_signatures_pass(driver: type) -> None:
    """Wider parameters, narrower returns and missing annotations are accepted."""
    assert driver_problems(driver) == {}
    verify_driver(driver, "lab")


def test_missing_members_are_problems_as_data() -> None:
    """`InvalidDriver.problems` maps each broken capability to its members' problems."""

    @implementer(ISnapshot)
    class Empty:  # type: ignore[misc]  # deliberately empty
        pass

    with pytest.raises(InvalidDriver) as err:
        verify_driver(Empty, "lab")
    assert dict(err.value.problems) == {
        "snapshot": ("missing create_snapshot", "missing delete_snapshot")
    }
