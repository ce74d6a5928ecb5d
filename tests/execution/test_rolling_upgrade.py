"""Conductors and workers of different versions (a rolling upgrade), over the real RabbitMQ.

A worker that received a request with a field it did not know failed the
step with ``TypeError: __init__() got an unexpected keyword argument``. Now
(request protocol 1, docs/scale.md):

* a worker ignores a request field or a step argument it does not know,
  with a warning in its log, and runs the step;
* a request that needs what the worker lacks (``protocol.requires``, a
  newer ``protocol.version``) is refused by the worker and reported by the
  conductor as `IncompatibleRequest`, naming it, with an ``incompatible``
  event; the strategy fallback does not retry it;
* a worker older than protocol 1 (the code of `OLD`, run from git) still
  takes every request that uses nothing it lacks (a field added later is
  sent only when it is not at its default), and when one does, the job
  fails with that named error, not a TypeError.

The "newer conductor" is this test process's own `WorkerDispatcher`
sending what a later version would; the workers are real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pieceworks.common_algorithms.operations.backup_tasks import BackupTransfer
from pieceworks.common_algorithms.operations.requests import (
    PROTOCOL_FIELD,
    REQUEST_PROTOCOL,
    BackupRequest,
    request_fields,
)
from pieceworks.execution import JobFailed, wait_for
from pieceworks.execution.dispatch import WorkerDispatcher
from pieceworks.protocols import IncompatibleRequest
from pieceworks.protocols.chunk_list import chunk_list_from_json
from pieceworks.protocols.values import chunks_from_json
from tests.execution.support import CHUNK, PERSISTENCE, REPO, Board, events, make_volume, poll
from tests.execution.test_workers import TRANSPORT, conductor, host_config, start_worker, stop

#: The last commit before request protocol 1 and guard_max_chunks: the "old" workers.
OLD = "d9482fb"
#: The last commit before `BackupTransfer`'s ``chunk_form`` (protocol 1): its workers
#: answer in rows only.
BEFORE_CHUNK_FORM = "43e48a9"


def transfer(
    board: Board, request: dict[str, Any], **extra: Any
) -> tuple[Any, list[dict[str, Any]]]:
    """Run a backup's transfer of ``vol-1`` on a worker of ``lab`` as a newer conductor would.

    Returns the step's result and the dispatcher's events.
    """
    seen: list[dict[str, Any]] = []
    # A conductor's backup job makes its store before it places a step; workers never do.
    (board.tmp / "store").mkdir(exist_ok=True)
    dispatcher = WorkerDispatcher(TRANSPORT, exchange=board.namespace, on_event=seen.append)
    arguments = {
        "backend": "lab",
        "store": "lab",
        "request": request,
        "attempt": {"strategy": "direct-stream"},
        "source": {"volume_id": "vol-1", "snapshot_id": None},
        **extra,
    }
    owner = BackupTransfer(name="probe")
    name = "backup-probe.transfer-chunks"
    try:
        return dispatcher.run(BackupTransfer, name, "lab", arguments, owner), seen
    except Exception as exc:
        exc.add_note(f"events: {seen}")
        raise


def test_fields_and_arguments_a_worker_does_not_know_are_ignored_with_a_warning(
    board: Board, tmp_path: Path
) -> None:
    make_volume(tmp_path / "volumes", "vol-1", 4)
    start_worker(board, "worker-1", host_config(board, tmp_path))
    request = {**request_fields(BackupRequest("vol-1", chunk_size=CHUNK)), "future_knob": 7}
    result, seen = transfer(board, request, future_argument="x")
    assert result["bytes_read"] == 4 * CHUNK and len(result["chunks"]) == 4, result
    assert [e["event"] for e in seen] == ["placed"]
    log = board.log("worker-1")
    assert "ignoring backup request field(s) future_knob: this version of pieceworks" in log
    assert "ignoring argument(s) future_argument, which this version of pieceworks" in log
    assert "TypeError" not in log


@pytest.mark.parametrize(
    ("protocol", "refusal"),
    [
        (
            {"version": REQUEST_PROTOCOL, "requires": ["future_knob"]},
            "IncompatibleRequest: the backup request needs field(s) future_knob, which this"
            f" version of pieceworks (request protocol {REQUEST_PROTOCOL}) does not know",
        ),
        (
            {"version": REQUEST_PROTOCOL + 1, "requires": []},
            f"IncompatibleRequest: the backup request speaks request protocol"
            f" {REQUEST_PROTOCOL + 1}; this version of pieceworks speaks {REQUEST_PROTOCOL}",
        ),
    ],
    ids=["requires", "version"],
)
def test_a_request_the_worker_cannot_honour_is_a_named_error_at_the_conductor(
    board: Board, tmp_path: Path, protocol: dict[str, Any], refusal: str
) -> None:
    make_volume(tmp_path / "volumes", "vol-1", 4)
    worker = start_worker(board, "worker-1", host_config(board, tmp_path))
    request = request_fields(BackupRequest("vol-1", chunk_size=CHUNK))
    request.update({"future_knob": 7, PROTOCOL_FIELD: protocol})
    with pytest.raises(IncompatibleRequest) as raised:
        transfer(board, request)
    message = str(raised.value)
    assert message.startswith(
        "the worker of backend 'lab' refused backup-probe.transfer-chunks: " + refusal
    ), message
    assert "TypeError" not in message
    # the worker refused before reading: nothing stored, and it still serves
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
    assert worker.poll() is None
    result, seen = transfer(board, request_fields(BackupRequest("vol-1", chunk_size=CHUNK)))
    assert result["bytes_read"] > 0 and [e["event"] for e in seen] == ["placed"]


def old_tree(tmp_path: Path, commit: str = OLD) -> Path:
    """The package of `commit`, extracted from this repository's git history."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:  # an sdist or a shallow clone
        pytest.skip(f"commit {commit} is not in this checkout: the old version cannot be extracted")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "pieceworks"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    return old


def start_old_worker(board: Board, old: Path, config: Path) -> subprocess.Popen[bytes]:
    """``pieceworks worker`` of commit `OLD` (its package first on the path: cwd of ``-m``)."""
    log_path = board.tmp / "old-worker.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed by the process end)
    command = [sys.executable, "-m", "pieceworks.cli", "-v", "--config", str(config), "worker"]
    command += ["--transport", TRANSPORT, "--exchange", board.namespace]
    proc = subprocess.Popen(command, cwd=old, env=board.env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    board.procs.append(proc)
    poll(
        "old worker ready",
        lambda: proc.poll() is not None or "worker ready" in board.log("old-worker"),
        30,
    )
    assert proc.poll() is None, board.log("old-worker")
    return proc


def test_a_worker_older_than_the_protocol_takes_what_it_knows_and_refuses_by_name(
    board: Board, tmp_path: Path
) -> None:
    """Conductor of this version, worker of `OLD` (no guard_max_chunks, no protocol)."""
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = host_config(board, tmp_path)
    old = old_tree(tmp_path)
    assert (
        "guard_max_chunks"
        not in (old / "pieceworks/common_algorithms/operations/requests.py").read_text()
    )
    start_old_worker(board, old, config)
    cond, path = conductor(board, "conductor-1", config)
    # at the default cap the field is not sent: the old worker runs the step; it
    # refuses the chunk_form argument it predates, and is asked again without it
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    result = wait_for(board.url, PERSISTENCE, job, timeout=90)
    assert result["bytes_read"] > 0
    placed = [e for e in events(path) if e.get("backend") == "lab"]
    assert [e["event"] for e in placed] == ["placed", "placed"], placed
    assert placed[1]["reason"] == "asked again without chunk_form, which the worker predates"
    # a cap the old worker cannot honour: the job fails naming it, once, no fallback
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK, guard_max_chunks=3)
    with pytest.raises(JobFailed) as failed:
        wait_for(board.url, PERSISTENCE, job, timeout=90)
    text = str(failed.value)
    assert "IncompatibleRequest: the worker of backend 'lab' cannot take" in text, text
    assert "unexpected keyword argument 'guard_max_chunks'" in text, text
    assert "it predates request protocol 1" in text and "upgrade it" in text, text
    kinds = [e["event"] for e in events(path) if e.get("backend") == "lab"]
    assert kinds == ["placed", "placed", "placed", "placed", "incompatible"], kinds
    stop(cond)


def test_a_worker_answers_in_columns_when_asked_and_in_rows_otherwise(
    board: Board, tmp_path: Path
) -> None:
    """The conductor asks for the columns form (~50 B of JSON a chunk, not ~110 B and
    ~300 B once parsed); rows stay the answer to an older conductor or an unknown form."""
    make_volume(tmp_path / "volumes", "vol-1", 4)
    start_worker(board, "worker-1", host_config(board, tmp_path))
    request = request_fields(BackupRequest("vol-1", chunk_size=CHUNK))
    rows, _ = transfer(board, request)
    columns, seen = transfer(board, request, chunk_form="columns")
    assert [e["event"] for e in seen] == ["placed"]
    assert isinstance(rows["chunks"], list) and columns["chunks"]["form"] == "columns"
    assert list(chunk_list_from_json(columns["chunks"])) == list(chunks_from_json(rows["chunks"]))
    assert len(json.dumps(columns["chunks"])) < len(json.dumps(rows["chunks"]))
    unknown, _ = transfer(board, request, chunk_form="columns-v9")
    assert unknown["chunks"] == rows["chunks"]
    log = board.log("worker-1")
    assert "unknown chunk_form 'columns-v9' (a newer conductor's): answering in 'rows'" in log
    assert "ignoring argument" not in log


def test_a_worker_before_chunk_form_is_asked_for_columns_and_answers_in_rows(
    board: Board, tmp_path: Path
) -> None:
    """A protocol-1 worker that predates ``chunk_form`` ignores it (a warning) and answers
    in rows, which this conductor reads: the job succeeds."""
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = host_config(board, tmp_path)
    old = old_tree(tmp_path, BEFORE_CHUNK_FORM)
    assert "chunk_form" not in (old / "pieceworks/execution/dispatch.py").read_text()
    start_old_worker(board, old, config)
    cond, path = conductor(board, "conductor-1", config)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    result = wait_for(board.url, PERSISTENCE, job, timeout=90)
    assert result["bytes_read"] == 4 * CHUNK
    kinds = [e["event"] for e in events(path) if e.get("backend") == "lab"]
    assert kinds == ["placed"], kinds
    assert "ignoring argument(s) chunk_form, which this version" in board.log("old-worker")
    stop(cond)
