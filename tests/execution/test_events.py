"""The conductor's ``--events`` lines: STYLE's field names, and the old ones still beside them.

The events named a job ``job``, the conductor ``who`` and the time ``t``
(and a dispatch event's reason ``why``); STYLE wants ``job_id``, a name
saying what it names, a time name and ``reason``. The new names are written
and the old ones keep their values until `REMOVED_IN` (consumers read them).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from pieceworks.common_algorithms.json_fields import DEPRECATED_FIELDS
from pieceworks.execution import wait_for
from pieceworks.execution.conductor import EVENTS_COMMAND, event_writer
from pieceworks.execution.dispatch import WorkerDispatcher
from tests.execution.support import CHUNK, PERSISTENCE, Board, events, make_volume, spec

RENAMED = {d.name: d.replaced_by for d in DEPRECATED_FIELDS if d.command == EVENTS_COMMAND}


def test_the_renamed_event_fields_are_the_four_style_asks_for() -> None:
    assert RENAMED == {"job": "job_id", "who": "conductor", "t": "time", "why": "reason"}


def test_an_event_line_has_the_new_names_and_the_old_ones_beside_them() -> None:
    stream = io.StringIO()
    write = event_writer(stream)
    before = time.time()
    write({"event": "claimed", "job_id": "j-1", "conductor": "c1"})
    seen: list[dict[str, object]] = []
    dispatcher = WorkerDispatcher("amqp://nowhere/", on_event=seen.append).for_job("j-2")
    dispatcher._event(event="in-process", atom="a", backend="lab", reason="no worker")
    write(seen[0])
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["job_id"] == first["job"] == "j-1"
    assert first["conductor"] == first["who"] == "c1"
    assert first["time"] == first["t"] and before <= first["time"] <= time.time()
    assert second["job_id"] == second["job"] == "j-2"
    assert second["reason"] == second["why"] == "no worker"


def test_a_conductor_writes_both_names_in_every_event(board: Board, tmp_path: Path) -> None:
    make_volume(tmp_path / "volumes", "vol-1", 4)
    config = board.config(
        "host",
        backends={"lab": spec("lab", "file", path=str(tmp_path / "volumes"))},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    proc, ev = board.conductor("c1", "--max-dispatches", "1", config=config)
    job = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    wait_for(board.url, PERSISTENCE, job, timeout=30)
    assert proc.wait(timeout=30) == 0
    lines = events(ev)
    assert [e["event"] for e in lines if e["event"] != "atom"] == ["claimed", "consumed"]
    for e in lines:
        assert e["job_id"] == e["job"] == job.job_uuid, e
        assert e["time"] == e["t"], e
        if e["event"] != "atom":
            assert e["conductor"] == e["who"] == "c1", e
