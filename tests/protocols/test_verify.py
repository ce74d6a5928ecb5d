"""Registering a driver verifies every capability it claims, both declaration styles."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from zope.interface import implementer

from pieceworks.protocols import (
    Compress,
    ICompress,
    InvalidDriver,
    ISnapshot,
    IStreamOut,
    Snapshot,
    SnapshotRef,
    VolumeRef,
    capabilities_of,
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
