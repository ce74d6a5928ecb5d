"""``pieceworks jobs post replicate``: a replication run by a conductor, as a user posts it.

Real processes against the real Redis and PostgreSQL. The job names the
source and target backends and the store; the conductor resolves them from
its own configuration and runs the replicate flow, whose copy step gets
names and plain values only.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from pieceworks.common_algorithms.runner import open_persistence
from pieceworks.execution import PostedJob
from tests.execution.support import PERSISTENCE, Board, make_volume, sha256_file, spec
from tests.execution.test_cli_jobs import pw, pw_json


def replicate_config(board: Board, tmp_path: Path) -> Path:
    """Backends ``lab`` and ``dr`` (file drivers), store ``lab``, ``[jobs]`` naming the board."""
    config = board.config(
        "host",
        backends={
            "lab": spec("lab", "slowfile", path=str(tmp_path / "volumes"), delay="0"),
            "dr": spec("dr", "file", path=str(tmp_path / "dr")),
        },
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    jobs = f'\n[jobs]\njobboard = "{board.url}"\npersistence = "{PERSISTENCE}"\n'
    config.write_text(config.read_text() + jobs)
    return config


def post_replicate(board: Board, config: Path, *args: str) -> dict[str, object]:
    doc: dict[str, object] = pw_json(board, config, "jobs", "post", "replicate", *args)
    status = pw_json(board, config, "jobs", "show", str(doc["job_id"]))
    board.jobs.append(
        PostedJob(
            str(doc["job_id"]),
            status["name"],
            str(doc["book_id"]),
            str(doc["flow_id"]),
            str(doc["result_atom"]),
        )
    )
    return doc


def persisted_factory(flow_id: str) -> dict[str, object]:
    with (
        open_persistence(PERSISTENCE) as persistence,
        contextlib.closing(persistence.get_connection()) as conn,
    ):
        meta = conn.get_flow_details(flow_id, lazy=True).meta or {}
    return dict(meta["factory"])


def test_post_show_watch_a_replicate_job_and_a_failing_one(board: Board, tmp_path: Path) -> None:
    """A replication posted by name runs in a conductor; its copy is identical. Posted again
    without --overwrite, the job fails and show/watch say why, by job id."""
    make_volume(tmp_path / "volumes", "vol-1", 12)
    (tmp_path / "dr").mkdir()
    config = replicate_config(board, tmp_path)
    doc = post_replicate(board, config, "--from-backend", "lab", "--volume", "vol-1",
                         "--to-backend", "dr", "--to-volume", "vol-1-copy",
                         "--chunk-size", "64KiB", "--priority", "high")  # fmt: skip
    assert doc["source_backend"] == "lab" and doc["target_backend"] == "dr"
    assert doc["store"] == "lab" and doc["priority"] == "high"
    assert doc["target_volume_id"] == "vol-1-copy"
    assert str(doc["name"]) == f"replicate-{doc['operation_id']}"
    factory = persisted_factory(str(doc["flow_id"]))
    assert factory["name"] == "pieceworks.common_algorithms.jobs.replicate_job_flow"
    kwargs = factory["kwargs"]
    assert isinstance(kwargs, dict)
    assert (kwargs["source"], kwargs["target"], kwargs["store"]) == ("lab", "dr", "lab")
    assert str(tmp_path) not in json.dumps(factory)  # names only: no path, no option

    board.conductor("conductor-1", "--max-dispatches", "2", config=config)
    watched = pw(board, config, "jobs", "watch", str(doc["job_id"]), "--timeout", "120")
    assert watched.returncode == 0, watched.stderr + board.log("conductor-1")
    assert f"job {doc['job_id']}: SUCCESS" in watched.stdout
    shown = pw_json(board, config, "jobs", "show", str(doc["job_id"]))
    assert shown["state"] == "SUCCESS" and shown["errors"] == []
    result = shown["result"]
    assert result["source_backend"] == "lab" and result["target_backend"] == "dr"
    assert result["target_volume_id"] == "vol-1-copy" and result["size"] == 12 * 64 * 1024
    assert any(atom.endswith(".copy-volume") for atom in shown["atoms"])
    assert sha256_file(tmp_path / "dr" / "vol-1-copy") == sha256_file(
        tmp_path / "volumes" / "vol-1"
    )
    text = pw(board, config, "jobs", "show", str(doc["job_id"])).stdout
    assert "target_volume_id=vol-1-copy" in text

    again = post_replicate(board, config, "--from-backend", "lab", "--volume", "vol-1",
                           "--to-backend", "dr", "--to-volume", "vol-1-copy")  # fmt: skip
    failed = pw(board, config, "jobs", "watch", str(again["job_id"]), "--timeout", "120")
    assert failed.returncode == 1, failed.stderr
    assert f"job {again['job_id']}: REVERTED" in failed.stdout
    shown = pw_json(board, config, "jobs", "show", str(again["job_id"]))
    assert shown["state"] == "REVERTED"
    reasons = " ".join(shown["errors"])
    assert "check-target: VolumeExists" in reasons and "vol-1-copy" in reasons
    assert "--overwrite" in reasons or "overwrite" in reasons


def test_post_replicate_refuses_bad_input_before_posting(board: Board, tmp_path: Path) -> None:
    """A copy onto itself, a bad name: exit 2, clear message, nothing on the board."""
    config = replicate_config(board, tmp_path)
    onto_itself = pw(board, config, "jobs", "post", "replicate", "--from-backend", "lab",
                     "--volume", "vol-1", "--to-backend", "lab")  # fmt: skip
    assert onto_itself.returncode == 2
    assert "replicating volume 'vol-1' onto itself on backend 'lab'" in onto_itself.stderr
    bad = pw(board, config, "jobs", "post", "replicate", "--from-backend", "no/such",
             "--volume", "vol-1", "--to-backend", "dr")  # fmt: skip
    assert bad.returncode == 2 and "backend name" in bad.stderr
    assert pw_json(board, config, "jobs", "list")["jobs"] == []
