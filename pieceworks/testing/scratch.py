"""`Scratch`: one check's driver, its scratch volumes, and what they must hold.

A check never trusts the driver to say what a volume holds: `Scratch`
keeps the expected bytes of every volume and snapshot it made (the model)
and compares what the driver gives back with it. Volumes are read through
stream-out when the driver has it, else by pushing them into a scratch
POSIX store (push-to-object-store) and decoding the chunks, so a driver
without stream-out (the remote driver) is checked the same way.

Why not pytest's ``tmp_path`` and fixtures alone: the same checks run from
``pieceworks check-driver``, outside pytest, on a configured backend.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import unittest
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from typing import TypeVar, cast

from zope.interface.interface import InterfaceClass

from pieceworks.common_algorithms import Backend
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.protocols import (
    Extent,
    IPushToObjectStore,
    ISnapshot,
    IStreamIn,
    IStreamOut,
    NotFound,
    SnapshotRef,
    Source,
    StoreSpec,
    VolumeRef,
    capability_name,
    verify_driver,
)
from pieceworks.protocols.chunks import chunk_key, decode_chunk
from pieceworks.testing.harness import IDriverHarness, size_unit

__all__ = [
    "CHECKS",
    "CHUNK_BYTES",
    "Check",
    "VOLUME_BYTES",
    "CheckFailed",
    "NotApplicable",
    "Scratch",
    "check",
    "covers",
    "nonzero_runs",
    "uncovered",
    "well_formed",
]

T = TypeVar("T")

#: Bytes the checks' volumes hold by default (a few chunks of the smallest chunk size).
VOLUME_BYTES = 256 << 10
#: Chunk size of the suite's backups (the smallest the algorithms accept).
CHUNK_BYTES = 64 << 10


@dataclass(frozen=True)
class Check:
    """One check of the suite: the capability it is about and the function doing it.

    `writes`: it writes into volumes in place (`IDriverHarness.write`), so
    it needs a harness; ``pieceworks check-driver`` runs only the others.
    """

    capability: str
    func: Callable[[Scratch], None]
    writes: bool

    @property
    def name(self) -> str:
        """The function's name (also the test's, after ``test_``)."""
        return self.func.__name__


#: Every check, in the order the modules define them.
CHECKS: list[Check] = []

F = TypeVar("F", bound=Callable[["Scratch"], None])


def check(capability: str, *, writes: bool = False) -> Callable[[F], F]:
    """Register a check function (see `Check`); the function is returned unchanged."""

    def register(func: F) -> F:
        CHECKS.append(Check(capability, func, writes))
        return func

    return register


class CheckFailed(AssertionError):
    """A driver broke its contract: the message names the capability and the bytes."""


class NotApplicable(unittest.SkipTest):
    """The driver lacks a capability a check needs; the check reports itself skipped.

    A `unittest.SkipTest`, so pytest reports it as a skip without the suite's
    check functions importing pytest.
    """


class Scratch:
    """The driver under test and the scratch volumes of one check.

    `harness` provides `IDriverHarness` (or at least its methods);
    `workdir` is a private directory for stores and helper backends
    (a temporary one, removed by `cleanup`, when None).
    """

    def __init__(self, harness: IDriverHarness, workdir: str | None = None) -> None:
        self.harness = harness
        self.unit = size_unit(harness)
        self.driver: object = harness.make_driver()
        verify_driver(self.driver, "under-test")
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="pieceworks-check-")
        self.model: dict[str, bytearray] = {}
        self.snapshots: dict[SnapshotRef, bytes] = {}
        self._volumes: list[str] = []

    # -- capabilities --

    def provides(self, iface: InterfaceClass) -> bool:
        """Whether the driver provides `iface`."""
        return bool(iface.providedBy(self.driver))

    def need(self, *ifaces: InterfaceClass) -> None:
        """Raise `NotApplicable` unless the driver provides every one of `ifaces`."""
        missing = [capability_name(i) for i in ifaces if not i.providedBy(self.driver)]
        if missing:
            raise NotApplicable(f"not applicable: the driver lacks {', '.join(missing)}")

    def use(self, iface: type[T]) -> T:
        """The driver, typed as `iface` (checked with `need` first)."""
        self.need(cast(InterfaceClass, iface))
        return cast(T, self.driver)

    # -- volumes --

    def size(self, n: int) -> int:
        """`n` rounded up to a volume size the backend can hold."""
        return -(-n // self.unit) * self.unit

    def new_id(self, kind: str = "v") -> str:
        """A fresh volume id, remembered for cleanup."""
        volume_id = f"pwt-{kind}-{secrets.token_hex(6)}"
        self._volumes.append(volume_id)
        return volume_id

    def volume(self, data: bytes, size: int | None = None) -> VolumeRef:
        """A new volume holding `data`, zero-padded to `size` (a valid size)."""
        size = self.size(len(data) if size is None else size)
        content = bytes(data) + bytes(size - len(data))
        volume_id = self.new_id()
        self.harness.create_volume(volume_id, content)
        self.model[volume_id] = bytearray(content)
        return VolumeRef(volume_id)

    def write(self, volume: VolumeRef, offset: int, data: bytes) -> None:
        """Write through the harness (the backend's own path) and into the model."""
        self.harness.write(volume.volume_id, offset, data)
        self.model[volume.volume_id][offset : offset + len(data)] = data

    def snapshot(self, volume: VolumeRef) -> SnapshotRef:
        """Take a snapshot and remember what it must hold."""
        ref = self.use(ISnapshot).create_snapshot(volume, f"pwt-s-{secrets.token_hex(6)}")
        self.snapshots[ref] = bytes(self.model[volume.volume_id])
        return ref

    def expected(self, source: Source) -> bytes:
        """What `source` must hold."""
        if isinstance(source, SnapshotRef):
            return self.snapshots[source]
        return bytes(self.model[source.volume_id])

    def stream_in(self, volume_id: str, size: int, writes: Iterable[tuple[int, bytes]]) -> None:
        """Replace (or create) `volume_id` by stream-in with `writes`; update the model."""
        writer = self.use(IStreamIn).open_write(VolumeRef(volume_id), size)
        content = bytearray(size)
        try:
            for offset, data in writes:
                writer.write_at(offset, data)
                content[offset : offset + len(data)] = data
        except BaseException:
            writer.abort()
            raise
        writer.commit()
        if volume_id not in self._volumes:
            self._volumes.append(volume_id)
        self.model[volume_id] = content

    # -- reading back --

    def can_read(self) -> bool:
        """Whether the suite can read a volume's bytes back (stream-out or push)."""
        return self.provides(IStreamOut) or self.provides(IPushToObjectStore)

    def read(self, source: Source) -> bytes:
        """Every byte of `source`, through stream-out, else through a push to a store."""
        if self.provides(IStreamOut):
            with closing(self.use(IStreamOut).open_read(source)) as reader:
                size = reader.size
                buffer = bytearray(size)
                got = reader.readinto_at(0, memoryview(buffer)) if size else 0
                while got < size:
                    n = reader.readinto_at(got, memoryview(buffer)[got:])
                    if n == 0:
                        raise CheckFailed(f"stream-out: {source} ends at {got} of {size} bytes")
                    got += n
            return bytes(buffer)
        if self.provides(IPushToObjectStore):
            store, spec = self.store()
            pushed = self.use(IPushToObjectStore).push_to_store(source, spec, CHUNK_BYTES, "none")
            out = bytearray(pushed.size)
            for ref in pushed.chunks:
                data = decode_chunk(store.get(chunk_key(ref.digest)), ref.digest, ref.length)
                out[ref.offset : ref.offset + ref.length] = data
            return bytes(out)
        raise NotApplicable("not applicable: the driver has neither stream-out nor push")

    def store(self, name: str = "pwt") -> tuple[PosixStore, StoreSpec]:
        """A fresh POSIX store under the work directory, with its spec."""
        path = os.path.join(self.workdir, f"store-{secrets.token_hex(4)}")
        return PosixStore(path, durable=False), StoreSpec(name, "posix", {"path": path})

    def discard(self, volume: VolumeRef) -> None:
        """Delete `volume` and the snapshots taken of it now (errors raise)."""
        for ref in [r for r in self.snapshots if r.volume_id == volume.volume_id]:
            cast(ISnapshot, self.driver).delete_snapshot(ref)
            del self.snapshots[ref]
        self.harness.delete_volume(volume.volume_id)
        self.model.pop(volume.volume_id, None)
        if volume.volume_id in self._volumes:
            self._volumes.remove(volume.volume_id)

    def helper_backend(self, name: str = "pwt-files") -> Backend:
        """A file-driver backend in the work directory, to restore into or back up from."""
        path = os.path.join(self.workdir, f"{name}-{secrets.token_hex(4)}")
        os.makedirs(path)
        return Backend.of(name, FileDriver(path))

    @staticmethod
    def helper_read(backend: Backend, volume_id: str) -> bytes:
        """Every byte of a helper backend's volume."""
        files = cast(FileDriver, backend.driver)
        with closing(files.open_read(VolumeRef(volume_id))) as reader:
            size = reader.size
        return files.read_range(VolumeRef(volume_id), 0, size)

    # -- the end --

    def cleanup(self) -> list[str]:
        """Delete every snapshot and volume this check made; the problems, as text.

        Never raises: a cleanup that fails is reported, not hidden, by the
        caller (the suite fails the check that left something behind).
        """
        problems: list[str] = []
        if self.provides(ISnapshot):
            for ref in self.snapshots:
                try:
                    cast(ISnapshot, self.driver).delete_snapshot(ref)
                except Exception as exc:
                    problems.append(f"delete_snapshot({ref}): {type(exc).__name__}: {exc}")
        for volume_id in self._volumes:
            try:
                self.harness.delete_volume(volume_id)
            except NotFound:
                pass
            except Exception as exc:
                problems.append(f"delete_volume({volume_id!r}): {type(exc).__name__}: {exc}")
        if self._own_workdir:
            with suppress(OSError):
                shutil.rmtree(self.workdir)
        return problems


def uncovered(
    written: Iterable[tuple[int, int]], extents: Sequence[Extent]
) -> list[tuple[int, int]]:
    """The parts ``(offset, length)`` of the written ranges ``(offset, length)`` that no
    extent covers, sorted."""
    merged: list[list[int]] = []
    for start, stop in sorted((e.offset, e.end) for e in extents if e.length):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    gaps: list[tuple[int, int]] = []
    for offset, length in sorted(written):
        position, end = offset, offset + length
        for start, stop in merged:
            if stop <= position:
                continue
            if start >= end:
                break
            if start > position:
                gaps.append((position, start - position))
            position = stop
            if position >= end:
                break
        if position < end:
            gaps.append((position, end - position))
    return gaps


def covers(extents: Sequence[Extent], written: Iterable[tuple[int, int]]) -> bool:
    """Whether `extents` cover every byte of the ranges ``(offset, length)``."""
    return not uncovered(written, extents)


def nonzero_runs(data: bytes | bytearray) -> list[tuple[int, int]]:
    """``(offset, length)`` of each run of non-zero bytes in `data`."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, b in enumerate(data):
        if b and start is None:
            start = i
        elif not b and start is not None:
            runs.append((start, i - start))
            start = None
    if start is not None:
        runs.append((start, len(data) - start))
    return runs


def well_formed(extents: Sequence[Extent], size: int, what: str) -> None:
    """Raise `CheckFailed` unless `extents` are sorted, disjoint and within `size`."""
    end = 0
    for e in extents:
        if e.offset < end:
            raise CheckFailed(f"{what}: extent {e} overlaps or precedes the one before")
        if e.end > size:
            raise CheckFailed(f"{what}: extent {e} ends past the {size}-byte volume")
        end = e.end
