"""Benchmark: `Registry.find()` over 10,000 registrations.

Run: ``make bench-registry`` (or ``.venv/bin/python bench/registry_find.py``).

The registry is filled the way a large deployment would fill it: 500
backends, each registering 20 tasks/factories under one or two capabilities,
three of 40 feature tags and a ``backend:<name>`` tag. Each query is timed
call by call (perf_counter_ns) and the median and 99th percentile are
printed. Target: median under 20 us for a two-attribute query.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from taskflow import task

from pieceworks.protocols import CAPABILITIES
from pieceworks.registry import Attribute, NoMatch, Registry


class Noop(task.Task):
    def execute(self) -> None:
        return None


def build(registrations: int, cache_size: int, seed: int = 7) -> Registry:
    rng = random.Random(seed)
    capabilities = list(CAPABILITIES.values())
    features = [f"feature-{i}" for i in range(40)]
    registry = Registry(cache_size=cache_size)
    backends = registrations // 20
    for n in range(registrations):
        backend = f"backend-{n % backends}"
        provides: list[Attribute] = [
            *rng.sample(capabilities, rng.randint(1, 2)),
            *rng.sample(features, 3),
            f"backend:{backend}",
        ]
        registry.register(Noop, provides=provides, backend=backend, name=f"task-{n}")
    return registry


def measure(call: Callable[[], object], runs: int) -> tuple[float, float, int]:
    samples = []
    size = 0
    for _ in range(runs):
        start = time.perf_counter_ns()
        result = call()
        samples.append(time.perf_counter_ns() - start)
        size = len(result) if isinstance(result, list) else 0
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99)] / 1000, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registrations", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    report = {}
    for cache_size, title in ((0, "result cache off"), (1024, "result cache on (repeat queries)")):
        report[title] = run(build(args.registrations, cache_size), args.runs, title)
    print(json.dumps({"registrations": args.registrations, "runs": args.runs, **report}))


def run(registry: Registry, runs: int, title: str) -> dict[str, dict[str, float]]:
    snapshot = CAPABILITIES["snapshot"]

    def miss() -> object:
        try:
            return registry.find(["feature-1", "no-such-tag"])
        except NoMatch:
            return []

    queries: dict[str, Callable[[], object]] = {
        "two attributes: tag + backend": lambda: registry.find(["feature-3", "backend:backend-42"]),
        "two attributes: capability + tag": lambda: registry.find([snapshot, "feature-3"]),
        "two attributes: two tags": lambda: registry.find(["feature-3", "feature-17"]),
        "any-of three tags, none-of one": lambda: registry.find(
            ["backend:backend-42"], any_of=["feature-1", "feature-2", "feature-3"], none_of=["x"]
        ),
        "no match (NotFound with explanation)": miss,
    }
    print(f"\nRegistry.find() with {len(registry):,} registrations, {title}, {runs:,} runs each")
    print(f"{'query':40} {'matches':>8} {'median us':>10} {'p99 us':>8}")
    report = {}
    for label, call in queries.items():
        median, p99, size = measure(call, runs if "no match" not in label else 200)
        report[label] = {"matches": size, "median_us": round(median, 2), "p99_us": round(p99, 2)}
        print(f"{label:40} {size:>8} {median:>10.2f} {p99:>8.2f}")
    return report


if __name__ == "__main__":
    main()
