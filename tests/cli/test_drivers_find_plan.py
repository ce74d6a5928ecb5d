"""drivers, check-driver, find and plan: what drivers can do, found through entry points.

The third-party test plugins (tests/cli/plugins, on PYTHONPATH) add an
offloading driver, a store that takes secrets and a driver whose module is
missing; the CLI finds them exactly as it finds the reference drivers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import MiB, Run, RunAll, config_file, has_dot, with_plugins, write_volume


@pytest.fixture
def two_backends(tmp_path: Path, home: Path) -> Path:
    """A configuration with a file backend, an offloading one and a POSIX store (empty)."""
    write_volume(home / "volumes", "vol-1", 2 * MiB)
    (home / "backups").mkdir()  # find and plan never create a store: an empty one exists
    return config_file(
        tmp_path,
        f"""
[backends.local]
driver = "file"
path = "{home / "volumes"}"

[backends.far]
driver = "offload"
path = "{home / "volumes"}"

[stores.local]
driver = "posix"
path = "{home / "backups"}"
durable = false

[engine]
persistence = "memory://"
""",
    )


def test_drivers_shows_the_capability_matrix_stores_and_load_failures(
    run_all: RunAll, env: dict[str, str]
) -> None:
    """Reference and third-party drivers side by side; a broken entry point is listed."""
    text, js = run_all([["drivers"], ["drivers", "--json"]], with_plugins(env))
    assert text.code == 0 and js.code == 0, text
    header = next(line for line in text.out.splitlines() if line.startswith("capability"))
    assert "file" in header.split() and "offload" in header.split()
    snapshot_row = next(line for line in text.out.splitlines() if line.startswith("snapshot "))
    assert snapshot_row.split()[1] == "yes"
    assert "offload (tests.support.drivers:OffloadFileDriver) completes:" in text.out
    assert "failed to load:" in text.out
    assert "broken (pieceworks.drivers): pieceworks_cli_testplugins.missing_module" in text.out
    data = js.json()
    by_name = {d["name"]: d for d in data["drivers"]}
    assert by_name["file"]["backup_strategies"]["in_use"] == ["snapshot-stream"]
    assert by_name["file"]["restore_strategies"] == ["stream-in"]
    assert "push-to-object-store" in by_name["offload"]["capabilities"]
    assert by_name["offload"]["backup_strategies"]["in_use"][0] == "offload"
    assert {s["name"] for s in data["stores"]} >= {"posix", "vault"}
    assert [f["name"] for f in data["failures"]] == ["broken"]
    assert "ModuleNotFoundError" in data["failures"][0]["error"]


def test_check_driver_verifies_a_class_and_lists_the_strategies_it_completes(
    run_all: RunAll, env: dict[str, str]
) -> None:
    """A good driver exits 0; a missing method or no complete strategy exits 1; bad
    MODULE:CLASS exits 2."""
    good, half, only, missing = run_all(
        [
            ["check-driver", "tests.support.drivers:OffloadFileDriver"],
            ["check-driver", "pieceworks_cli_testplugins.checks:HalfSnapshot"],
            ["check-driver", "pieceworks_cli_testplugins.checks:SnapshotOnly", "--json"],
            ["check-driver", "no_such_module:Driver"],
        ],
        with_plugins(env),
    )
    assert good.code == 0, good
    assert "capabilities verified" in good.out
    assert "backup, volume in use:     offload, snapshot-stream" in good.out
    assert "restore:                   offload, stream-in" in good.out
    assert "fast-backup" in good.out
    assert half.code == ExitCode.FAILED, half
    assert half.err.startswith("pieceworks: error: driver 'HalfSnapshot' (HalfSnapshot)")
    assert "delete_snapshot" in half.err and half.err.count("\n") == 1
    assert only.code == ExitCode.FAILED, only
    assert only.json()["ok"] is False
    assert "completes no backup or restore strategy" in only.err
    assert "push-to-object-store" in only.err
    assert missing.code == ExitCode.USAGE and "cannot import module" in missing.err, missing


def test_find_searches_the_registry_of_configured_backends(
    run_all: RunAll, env: dict[str, str], two_backends: Path
) -> None:
    """The seed's manager query: who can do a fast or live backup? A miss exits 3 with why."""
    cfg = ["--config", str(two_backends)]
    fast, either, miss, pieces = run_all(
        [
            [*cfg, "find", "fast-backup", "--json"],
            [*cfg, "find", "--any", "fast-backup", "live-backup", "--kind", "factory"],
            [*cfg, "find", "backup", "--none", "slow-backup", "--backend", "local"],
            [*cfg, "find", "--backend", "local", "--buildable", "--json"],
        ],
        with_plugins(env),
    )
    assert fast.code == 0, fast
    assert [(r["name"], r["backend"]) for r in fast.json()] == [("far.backup", "far")]
    described = fast.json()[0]
    assert "fast-backup" in described["attributes"]
    assert described["requires"] == ["volume_id"]  # what the piece needs from the store
    assert "far.backup.result" in described["provides"]
    assert described["parameters"][0]["name"] == "volume_id"
    assert described["summary"].startswith("Back up a volume")
    assert either.code == 0, either
    assert "far.backup" in either.out and "local.backup" in either.out
    assert miss.code == ExitCode.NOT_FOUND, miss
    assert miss.err.startswith("pieceworks: error: no registration matches all of ['backup']")
    assert "'local.backup' (factory) has excluded ['slow-backup']" in miss.err
    assert miss.err.count("\n") == 1
    assert pieces.code == 0, pieces
    assert [r["name"] for r in pieces.json()] == [
        "local.backup",
        "local.restore",
        "local.verify",
        "local.delete",
    ]  # the driver 'local' is left out


def test_plan_in_text_json_dot_and_svg(
    run_all: RunAll, env: dict[str, str], two_backends: Path, tmp_path: Path
) -> None:
    """The plan says what runs first and why the rest do not; --format svg needs dot."""
    cfg = ["--config", str(two_backends)]
    plugins = with_plugins(env)
    no_dot = {**plugins, "PATH": str(tmp_path / "empty")}
    svg = [*cfg, "plan", "backup", "--volume", "vol-1", "--format", "svg"]
    text, js, dot, unknown, svg_missing, *rendered = run_all(
        [
            [*cfg, "plan", "backup", "--volume", "vol-1", "--in-use"],
            [*cfg, "plan", "backup", "--volume", "vol-1", "--backend", "far", "--json"],
            [*cfg, "plan", "backup", "--volume", "vol-1", "--format", "dot"],
            [*cfg, "plan", "restore", "bk-none"],
            (svg, no_dot),
            *([svg] if has_dot() else []),
        ],
        plugins,
    )
    assert text.code == 0, text
    assert "-> snapshot-stream:" in text.out
    assert "-- direct-stream: the volume is in use and force is not set" in text.out
    plan = js.json()
    assert set(plan) >= {"operation", "chosen", "strategies"}
    assert plan["operation"] == "backup" and plan["chosen"] == "offload"
    assert [s["name"] for s in plan["strategies"]] == [  # not in use: direct before snapshot
        "offload",
        "direct-stream",
        "snapshot-stream",
    ]
    assert all(set(s) >= {"name", "eligible", "reason"} for s in plan["strategies"])
    assert dot.out.startswith('digraph "backup"') and '"request" -> "direct-stream"' in dot.out
    assert unknown.code == ExitCode.NOT_FOUND and "no backup 'bk-none'" in unknown.err
    assert svg_missing.code == ExitCode.USAGE, svg_missing
    assert "Graphviz's 'dot' program, which is not on PATH" in svg_missing.err
    for r in rendered:
        assert r.code == 0 and "<svg" in r.out, r


def test_drivers_never_says_yes_for_a_capability_that_fails_verification(
    run_all: RunAll, env: dict[str, str]
) -> None:
    """A plugin driver with an async open_read shows FAILS for stream-out, with why."""
    text, js = run_all([["drivers"], ["drivers", "--json"]], with_plugins(env))
    assert text.code == 0 and js.code == 0, text
    header = next(line for line in text.out.splitlines() if line.startswith("capability"))
    column = header.split().index("asyncread")
    row = next(line for line in text.out.splitlines() if line.startswith("stream-out "))
    assert row.split()[column] == "FAILS"
    assert "FAILS stream-out: open_read: is 'async def'" in text.out
    asyncread = next(d for d in js.json()["drivers"] if d["name"] == "asyncread")
    assert "stream-out" not in asyncread["capabilities"]
    assert list(asyncread["problems"]) == ["stream-out"]


@pytest.mark.parametrize(
    ("target", "capability", "problem"),
    [
        ("AsyncReader", "stream-out", "open_read: is 'async def'"),
        ("WrongAnnotation", "allocated-extents", "parameter 'source' is annotated int"),
        ("AbstractSnapshot", "snapshot", "create_snapshot: abstract (not implemented)"),
    ],
)
def test_check_driver_refuses_what_mypy_zope_would(
    run: Run, env: dict[str, str], target: str, capability: str, problem: str
) -> None:
    """An async method, a wrong annotation, an abstract class: exit 1, problems as data."""
    text = run("check-driver", f"pieceworks_cli_testplugins.checks:{target}", env=with_plugins(env))
    js = run(
        "check-driver",
        f"pieceworks_cli_testplugins.checks:{target}",
        "--json",
        env=with_plugins(env),
    )
    assert text.code == ExitCode.FAILED, text
    assert problem in text.err
    assert js.code == ExitCode.FAILED, js
    data = js.json()
    assert data["ok"] is False
    assert any(problem in p for p in data["problems"][capability])


def _backend_config(tmp_path: Path, driver: str, options: str) -> Path:
    (tmp_path / "vols").mkdir(exist_ok=True)
    return config_file(
        tmp_path,
        f'[backends.lab]\ndriver = "{driver}"\n{options}\n[engine]\npersistence = "memory://"\n',
    )


def test_check_driver_backend_runs_the_suite_on_a_scratch_volume(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """A configured file backend: built, verified, checked on scratch volumes it removes."""
    config = _backend_config(tmp_path, "file", f'path = "{tmp_path / "vols"}"')
    out = run("--config", str(config), "check-driver", "--backend", "lab", "--json", timeout=300)
    assert out.code == 0, out
    data = out.json()
    assert data["ok"] is True and data["backend"] == "lab"
    results = {c["check"]: c["result"] for c in data["checks"]}
    assert results["extents_cover_every_data_byte"] == "passed"
    assert results["abort_leaves_the_old_content"] == "passed"
    assert results["a_push_restores_through_the_common_restore"] == "not applicable"
    assert "changed_extents_cover_every_write" not in results  # needs an in-place write
    assert list((tmp_path / "vols").iterdir()) == [] or all(
        p.name.startswith(".") for p in (tmp_path / "vols").iterdir()
    )


def test_check_driver_backend_catches_a_lying_driver(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """Type-correct but omitting an extent: verification passes, the suite fails it."""
    config = _backend_config(tmp_path, "omits", f'path = "{tmp_path / "vols"}"')
    out = run(
        "--config",
        str(config),
        "check-driver",
        "--backend",
        "lab",
        env=with_plugins(env),
        timeout=300,
    )
    assert out.code == ExitCode.FAILED, out
    assert "failed         allocated-extents: extents_cover_every_data_byte" in out.out
    assert "data outside every extent" in out.out
    assert "conformance check(s): extents_cover_every_data_byte" in out.err


def test_check_driver_backend_names_a_constructor_that_does_not_take_the_options(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """The section gives ``path``, the class wants ``root``: a configuration error (exit 2)."""
    config = _backend_config(tmp_path, "picky", f'path = "{tmp_path / "vols"}"')
    out = run("--config", str(config), "check-driver", "--backend", "lab", env=with_plugins(env))
    assert out.code == ExitCode.USAGE, out
    assert "backends.lab" in out.err and "path" in out.err


def test_check_driver_needs_a_class_or_a_backend(run: Run) -> None:
    """Neither MODULE:CLASS nor --backend is a usage error."""
    out = run("check-driver")
    assert out.code == ExitCode.USAGE, out
    assert "MODULE:CLASS, or --backend NAME" in out.err


def test_verify_against_source_names_what_a_lying_driver_left_out(
    run: Run, env: dict[str, str], tmp_path: Path
) -> None:
    """The ``omits`` driver's extents leave out the volume's last data: a backup made
    without the sampling guard verifies OK from the store, and ``--against-source``
    exits 4 naming the offset."""
    volumes = tmp_path / "vols"
    volumes.mkdir()
    data = bytearray(1 << 20)
    data[0:100] = b"a" * 100
    data[(1 << 20) - 100 :] = b"z" * 100
    (volumes / "v").write_bytes(bytes(data))
    config = config_file(
        tmp_path,
        f'[backends.lab]\ndriver = "omits"\npath = "{volumes}"\n'
        f'[stores.local]\ndriver = "posix"\npath = "{tmp_path / "store"}"\n'
        '[engine]\npersistence = "memory://"\n',
    )
    plugins = with_plugins(env)
    c = ["--config", str(config)]
    # The sampling guard off: at its default it may catch this lie itself (a random
    # sample of the skipped chunks) and read everything, leaving verify nothing to find.
    made = run(*c, "backup", "--volume", "v", "--chunk-size", "64KiB", "--guard-sample", "0",
               "--json", env=plugins)  # fmt: skip
    assert made.code == 0, made
    backup_id = made.json()["backup_id"]
    plain = run(*c, "verify", backup_id, env=plugins)
    assert plain.code == 0, plain
    against = run(*c, "verify", backup_id, "--against-source", env=plugins)
    assert against.code == ExitCode.CORRUPT, against
    assert f"offset {(1 << 20) - (64 << 10)} (65536 bytes): a hole in the backup" in against.out
    as_json = run(*c, "verify", backup_id, "--against-source", "--json", env=plugins)
    assert as_json.code == ExitCode.CORRUPT
    offsets = [d["offset"] for d in as_json.json()["differences"]]
    assert offsets == [0, (1 << 20) - (64 << 10)]  # a non-sparse file: one extent, left out
