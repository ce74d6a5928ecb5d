"""The data path: back up, restore and verify a volume chunk by chunk, pipelined.

A volume is cut into fixed `chunk_size` chunks at offsets ``0, chunk_size,
2 * chunk_size, ...`` (the last may be shorter). Each chunk that is not all
zeros is stored once, as the content-addressed object of
`pieceworks.protocols.chunks`, and listed as a `ChunkRef`; zero chunks and
unallocated ranges are holes that cost nothing.

Backup: the calling thread reads chunks in ascending order (the
`VolumeReader` contract) into a pool of at most `depth` reusable buffers;
`threads` worker threads check for zeros, hash, and store each chunk
(`encode_framed` keeps one compressor per thread). Each buffer keeps
`HEADER_BYTES` of room in front of the chunk it is read into, so that a
chunk stored uncompressed is written from the buffer itself, header
included, without copying it. A chunk holds its buffer until it is hashed
and encoded (and, stored uncompressed, written), so at most `depth` chunks are in flight and
memory stays below about ``(depth + threads) * chunk_size * 2`` whatever the
volume size. A store with ``deferred-sync`` (`IDeferredSync`, the POSIX
store) gets every new chunk with `put_unsynced` and one `sync` of all the
chunks the backup references that it wrote or found in the store, before
`backup_chunks` returns: so the disk writes while the threads work, and the
manifest the caller writes next references durable chunks only. (The
remote target's push, `pieceworks.drivers.remote.transfer.push_volume`, is
this backup too, run next to the volume.) Restore
and verify fetch and check chunks on worker threads, at most `depth` ahead
of the calling thread, which writes (restore) in offset order; a writer
that takes concurrent writes (a file) is written by the workers instead.

All three run entirely in the calling thread's call: when one returns or
raises, no worker touches the store or the volume any more. A failure on
any thread stops the rest and the first exception is re-raised as it was
raised. None of them opens or closes the reader, writer or store: the
caller owns those (a restore's caller commits the writer on success and
aborts it on any exception).

The code is in `backup_pipeline` (backup), `restore_pipeline` (restore,
verify, fetching one chunk) and `pipeline_common` (results and helpers);
this module is where their names have always been imported from.
"""

from __future__ import annotations

from pieceworks.common_algorithms.format.backup_pipeline import (
    backup_chunks,
)
from pieceworks.common_algorithms.format.pipeline_common import (
    BackupResult,
    BackupStats,
    ChunkMissing,
    ChunkProblem,
    Progress,
    RestoreStats,
    VerifyReport,
)
from pieceworks.common_algorithms.format.restore_pipeline import (
    QUARANTINE_PREFIX,
    get_chunk,
    quarantine_chunk,
    restore_chunks,
    verify_chunks,
)
from pieceworks.protocols import OperationCancelled
from pieceworks.protocols.chunks import DEFAULT_CHUNK_SIZE

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BackupResult",
    "BackupStats",
    "QUARANTINE_PREFIX",
    "ChunkMissing",
    "ChunkProblem",
    "OperationCancelled",
    "Progress",
    "RestoreStats",
    "VerifyReport",
    "backup_chunks",
    "get_chunk",
    "quarantine_chunk",
    "restore_chunks",
    "verify_chunks",
]
