"""Put bytes into, and hash, a volume of any reference driver (tests only)."""

from __future__ import annotations

import hashlib
from contextlib import closing

from pieceworks.common_algorithms import Backend
from pieceworks.drivers.file import FileDriver
from pieceworks.drivers.qcow2 import Qcow2Driver
from pieceworks.drivers.rbd import RbdDriver
from pieceworks.drivers.remote import RemoteDriver
from pieceworks.protocols import IStreamOut, VolumeRef


def put(backend: Backend, volume_id: str, data: bytes) -> None:
    """Make `volume_id` hold exactly `data` (remote: through the target's admin API)."""
    driver = backend.driver
    if isinstance(driver, RemoteDriver):
        driver.write_volume_bytes(volume_id, data)
    else:
        assert isinstance(driver, FileDriver | Qcow2Driver | RbdDriver)
        driver.write_volume(VolumeRef(volume_id), data)


def digest(backend: Backend, volume_id: str) -> str:
    """sha256 of the volume's bytes (remote: computed by the target itself)."""
    driver = backend.driver
    if isinstance(driver, RemoteDriver):
        return driver.volume_sha256(volume_id)
    with closing(backend.use(IStreamOut).open_read(VolumeRef(volume_id))) as reader:
        buf = bytearray(reader.size)
        assert reader.readinto_at(0, memoryview(buf)) == reader.size
    return hashlib.sha256(buf).hexdigest()
