"""Names several layers use are defined once, in `pieceworks.protocols` (STYLE.md section 3).

``OperationCancelled`` (the chunk pipeline and the remote target raised two
different classes of that name), ``DEFAULT_CHUNK_SIZE`` (defined twice) and
the chunk list's JSON form (``chunks_to_json``/``chunks_from_json``, written
twice) each have one definition that the algorithms and the drivers import.
"""

from __future__ import annotations

import pytest

from pieceworks import protocols
from pieceworks.common_algorithms.format import chunk_pipeline
from pieceworks.common_algorithms.operations import backup_tasks, requests
from pieceworks.drivers import remote_target
from pieceworks.drivers.remote import protocol, transfer
from pieceworks.protocols import ChunkRef, chunks
from pieceworks.protocols.values import chunks_from_json, chunks_to_json


def test_operation_cancelled_is_one_class_caught_the_same_everywhere() -> None:
    """A cancel from the pipeline or from a target is `protocols.OperationCancelled`."""
    assert chunk_pipeline.OperationCancelled is protocols.OperationCancelled
    assert getattr(transfer, "OperationCancelled") is protocols.OperationCancelled  # noqa: B009
    assert remote_target.OperationCancelled is protocols.OperationCancelled
    assert protocols.OperationCancelled.reference == "operation-cancelled"


def test_the_default_chunk_size_is_one_constant() -> None:
    """4 MiB, defined in `protocols.chunks`, used by the requests and the pipeline."""
    assert chunks.DEFAULT_CHUNK_SIZE == 4 * 1024 * 1024
    assert requests.DEFAULT_CHUNK_SIZE is chunks.DEFAULT_CHUNK_SIZE
    assert chunk_pipeline.DEFAULT_CHUNK_SIZE is chunks.DEFAULT_CHUNK_SIZE
    assert requests.BackupRequest("v").chunk_size == chunks.DEFAULT_CHUNK_SIZE


def test_chunk_lists_have_one_json_form_and_it_checks_what_it_reads() -> None:
    """Persisted results and the wire share the functions; malformed rows are refused."""
    for module in (backup_tasks, protocol, remote_target):
        assert module.chunks_to_json is chunks_to_json
        assert module.chunks_from_json is chunks_from_json
    refs = (ChunkRef(0, 4096, "a" * 64, "zstd", 100), ChunkRef(8192, 10, "b" * 64, "none", 10))
    assert chunks_from_json(chunks_to_json(refs)) == refs
    bad_rows: list[object] = [{"rows": []}, [[0, 1, "d", "none"]], [[0, True, "d", "none", 1]]]
    for bad in bad_rows:
        with pytest.raises(ValueError, match="chunk"):
            chunks_from_json(bad)
