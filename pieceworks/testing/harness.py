"""`IDriverHarness`: the one object a driver package gives the conformance suite.

The suite can do almost everything through a driver's capabilities, but no
capability creates a volume with given bytes or writes into one in place
the way the backend's users do (the path its change tracking watches).
A harness does exactly that, and nothing else.
"""

from __future__ import annotations

from zope.interface import Interface

__all__ = ["IDriverHarness", "size_unit"]


class IDriverHarness(Interface):
    """How the conformance suite gets a driver and puts bytes into its volumes.

    Provide it with ``@implementer(IDriverHarness)`` on any class and return
    an instance from a pytest fixture named ``pieceworks_harness``. Every
    volume id the suite passes is a fresh, valid id (``pwt-...``); the
    suite deletes every volume and snapshot it made when a check ends.

    Optional hints (plain attributes; the suite uses the default when one
    is missing):

    ``size_unit`` (int, bytes, default 1)
        Volume sizes the backend can hold are multiples of it (qcow2: 512).
        The suite only creates volumes, and streams in sizes, that are.
    """

    def make_driver() -> object:
        """Return the driver under test, configured on this harness's storage.

        Called once per check; the object must provide the capabilities the
        driver claims (it is verified like `Backend.of` does).
        """

    def create_volume(volume_id: str, data: bytes) -> None:
        """Create volume `volume_id` holding exactly `data` (its size is ``len(data)``).

        ``len(data)`` is a multiple of ``size_unit``. The volume does not exist
        yet. Zero bytes may be left unallocated (holes).
        """

    def write(volume_id: str, offset: int, data: bytes) -> None:
        """Write `data` at byte `offset` of the existing volume, in place.

        Write through the backend's own data path (what a VM or a user of
        the volume would do), so that change tracking sees it; the volume's
        snapshots must not change. The range is inside the volume.
        """

    def delete_volume(volume_id: str) -> None:
        """Delete volume `volume_id` and its snapshots; a missing one is not an error."""


def size_unit(harness: object) -> int:
    """The harness's ``size_unit`` hint (bytes, at least 1; default 1)."""
    unit = getattr(harness, "size_unit", 1)
    if not isinstance(unit, int) or isinstance(unit, bool) or unit < 1:
        raise TypeError(f"harness size_unit must be a positive int, not {unit!r}")
    return unit
