"""A conductor's Prometheus metrics, scraped over HTTP from a real conductor process."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pieceworks.execution import JobFailed, wait_for
from tests.execution.support import CHUNK, PERSISTENCE, Board, events, make_volume, poll, spec


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at ``/metrics``: (name, sorted labels) → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_conductor_counts_claims_outcomes_durations_bytes_and_waiting_jobs(
    board: Board, tmp_path: Path
) -> None:
    """One backup succeeds, one fails: claimed 2, consumed 2, failed 1, bytes of the good one."""
    make_volume(tmp_path / "volumes", "vol-1", 8)  # 7 data chunks, 1 hole
    config = board.config(
        "host",
        backends={"lab": spec("lab", "file", path=str(tmp_path / "volumes"))},
        stores={"lab": spec("lab", "posix", path=str(tmp_path / "store"))},
    )
    good = board.post_backup("lab", "lab", volume_id="vol-1", chunk_size=CHUNK)
    bad = board.post_backup("lab", "lab", volume_id="no-such-volume", chunk_size=CHUNK)
    proc, ev = board.conductor("conductor-1", "--metrics-port", "0", config=config)
    poll("the metrics port", lambda: any(e["event"] == "metrics" for e in events(ev)), 60)
    port = next(int(e["port"]) for e in events(ev) if e["event"] == "metrics")

    result = wait_for(board.url, PERSISTENCE, good, timeout=120)
    with pytest.raises(JobFailed):
        wait_for(board.url, PERSISTENCE, bad, timeout=120)
    poll(
        "both outcomes counted",
        lambda: (
            scrape(port).get(("pieceworks_jobs_finished_total", (("outcome", "consumed"),))) == 2
        ),
        timeout=30,
    )
    samples = scrape(port)
    assert samples[("pieceworks_jobs_claimed_total", ())] == 2
    assert samples[("pieceworks_jobs_failed_total", ())] == 1
    assert samples[("pieceworks_job_seconds_count", (("outcome", "consumed"),))] == 2
    read = samples[("pieceworks_bytes_moved_total", (("direction", "read"),))]
    assert read == result["bytes_read"] >= 7 * CHUNK
    stored = samples[("pieceworks_bytes_moved_total", (("direction", "stored"),))]
    assert stored == result["bytes_stored"] > 0
    assert samples[("pieceworks_jobs_waiting", ())] == 0
    assert proc.poll() is None  # still serving
