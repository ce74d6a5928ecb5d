"""Capability protocols: what a storage driver can implement, piece by piece.

Each capability is one zope.interface interface, declared once, with a base
class that restates it and adds free behaviour (like `collections.abc`).
A driver either subclasses the base classes it wants or puts `@implementer`
on any class; mypy (with the mypy-zope plugin) and `verify_driver` check
both the same way.

=========================  =====================  ======================
capability                 interface              base class
=========================  =====================  ======================
snapshot                   `ISnapshot`            `Snapshot`
stream-out                 `IStreamOut`           `StreamOut`
stream-in                  `IStreamIn`            `StreamIn`
push-to-object-store       `IPushToObjectStore`   `PushToObjectStore`
pull-from-object-store     `IPullFromObjectStore` `PullFromObjectStore`
compress                   `ICompress`            `Compress`
allocated-extents          `IAllocatedExtents`    `AllocatedExtents`
changed-blocks             `IChangedBlocks`       `ChangedBlocks`
object-store               `IObjectStore`         `ObjectStore`
stored-sizes (extension)   `IStoredSizes`         `StoredSizes`
replicate-to-peer          `IReplicateToPeer`     `ReplicateToPeer`
=========================  =====================  ======================

Published capabilities never gain methods: new behaviour goes into a new
interface that extends one (``class ISnapshotTree(ISnapshot)``), and a
search for the base capability finds providers of the extension too.
"""

from pieceworks.protocols.capabilities import CAPABILITIES, capabilities_of, capability_name
from pieceworks.protocols.compress import Compress, ICompress
from pieceworks.protocols.errors import (
    BackendError,
    BackendNotFound,
    BackupNotFound,
    ChangeTrackingLost,
    ConfigError,
    CorruptionError,
    DriverNotFound,
    IncompatibleRequest,
    InvalidDriver,
    InvalidName,
    NotFound,
    ObjectNotFound,
    OperationCancelled,
    PieceworksError,
    ShortRead,
    SnapshotNotFound,
    StoreMissing,
    StoreNotFound,
    TransientError,
    UnsupportedCodec,
    VolumeExists,
    VolumeNotFound,
    WaitTimedOut,
)
from pieceworks.protocols.extents import (
    AllocatedExtents,
    ChangedBlocks,
    IAllocatedExtents,
    IChangedBlocks,
)
from pieceworks.protocols.io import VolumeReader, VolumeWriter
from pieceworks.protocols.object_store import (
    IObjectStore,
    IStoredSizes,
    ObjectStore,
    StoredSizes,
    stored_sizes,
)
from pieceworks.protocols.offload import (
    IIncrementalOffload,
    IPullFromObjectStore,
    IPushToObjectStore,
    ISealedOffload,
    PullFromObjectStore,
    PushToObjectStore,
)
from pieceworks.protocols.replicate import IReplicateToPeer, ReplicateToPeer
from pieceworks.protocols.snapshot import ISnapshot, Snapshot
from pieceworks.protocols.stream import IStreamIn, IStreamOut, StreamIn, StreamOut
from pieceworks.protocols.values import (
    BackendSpec,
    ChunkRef,
    Extent,
    ObjectInfo,
    PushedVolume,
    ReplicatedVolume,
    SnapshotRef,
    Source,
    StoreSpec,
    VolumeRef,
    validate_id,
    validate_key,
)
from pieceworks.protocols.verify import driver_problems, verify_driver

__all__ = [
    "CAPABILITIES",
    "AllocatedExtents",
    "BackendError",
    "BackendNotFound",
    "BackendSpec",
    "BackupNotFound",
    "ChangeTrackingLost",
    "ChangedBlocks",
    "ChunkRef",
    "Compress",
    "ConfigError",
    "CorruptionError",
    "DriverNotFound",
    "Extent",
    "IAllocatedExtents",
    "IChangedBlocks",
    "ICompress",
    "IObjectStore",
    "IIncrementalOffload",
    "IPullFromObjectStore",
    "IPushToObjectStore",
    "ISealedOffload",
    "IReplicateToPeer",
    "ISnapshot",
    "IStreamIn",
    "IStoredSizes",
    "IStreamOut",
    "IncompatibleRequest",
    "InvalidDriver",
    "InvalidName",
    "NotFound",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "OperationCancelled",
    "PieceworksError",
    "PullFromObjectStore",
    "PushedVolume",
    "ReplicateToPeer",
    "ReplicatedVolume",
    "PushToObjectStore",
    "Snapshot",
    "ShortRead",
    "SnapshotNotFound",
    "SnapshotRef",
    "Source",
    "StoreMissing",
    "StoreNotFound",
    "StoreSpec",
    "StoredSizes",
    "StreamIn",
    "StreamOut",
    "TransientError",
    "UnsupportedCodec",
    "VolumeExists",
    "VolumeNotFound",
    "WaitTimedOut",
    "VolumeReader",
    "VolumeRef",
    "VolumeWriter",
    "capabilities_of",
    "capability_name",
    "stored_sizes",
    "validate_id",
    "validate_key",
    "driver_problems",
    "verify_driver",
]
