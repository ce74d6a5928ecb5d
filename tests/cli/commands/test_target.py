"""``pieceworks target serve`` (and ``python -m pieceworks.drivers.remote.server``) refuses
options it cannot serve with, in one line, before it listens.

A port out of range was an ``unexpected OverflowError`` (exit 1) from the bind;
an empty ``--token-file`` served with no token at all, so anyone reaching the
target could use it; a ``--token-file /dev/zero`` was read until memory ran out;
a ``--dir`` that is a file, a token file that is missing
and an address that does not resolve printed ``error: [Errno ...]`` without
saying which option was wrong.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Run

SERVER = [sys.executable, "-m", "pieceworks.drivers.remote.server"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--port", "70000"], "argument --port: port '70000' out of range: use 0"),
        (["--port=-1"], "argument --port: port '-1' out of range"),
        (["--max-jobs", "0"], "argument --max-jobs: '0' must be at least 1"),
        (["--dir", " "], "argument --dir: must not be empty or blank"),
        (["--dir", "{file}"], "cannot serve --dir {file}: not a directory"),
        (["--token-file", "{missing}"], "cannot read --token-file {missing}: No such file"),
        (["--token-file", "{empty}"], "--token-file {empty} is empty"),
        (["--token-file", "/dev/zero"], "--token-file /dev/zero is larger than 64 KiB"),
        (["--token-file", "{big}"], "--token-file {big} is larger than 64 KiB"),
        (["--host", "no-such-host.invalid"], "cannot listen on no-such-host.invalid:0: "),
    ],
)
def test_a_target_that_cannot_serve_says_why_in_one_line(
    run: Run, tmp_path: Path, options: list[str], message: str
) -> None:
    names = {"file": tmp_path / "plain", "missing": tmp_path / "nope", "empty": tmp_path / "tok"}
    names["big"] = tmp_path / "big"
    names["big"].write_bytes(b"t" * (64 * 1024 + 1))
    names["file"].write_text("x")
    names["empty"].write_text(" \n")
    options = [o.format(**names) for o in options]
    message = message.format(**names)
    if "--dir" not in options:
        options = ["--dir", str(tmp_path / "volumes"), *options]
    done = run("target", "serve", *options, timeout=30)
    assert done.code == ExitCode.USAGE, done
    assert "listening on" not in done.out, done
    assert f"pieceworks target serve: error: {message}" in done.err, done
    assert "Traceback" not in done.err and "unexpected" not in done.err, done


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--port", "65536"], "argument --port: port '65536' out of range"),
        (["--threads", "0"], "argument --threads: '0' must be a finite number at least 1"),
        (["--heartbeat", "0"], "argument --heartbeat: '0' must be a finite number more than 0"),
        (["--answer-within", "nan"], "argument --answer-within: 'nan' must be a finite number"),
        (["--log-level", "loud"], "argument --log-level: unknown level 'loud'"),
        (["--token-file", "{empty}"], "--token-file {empty} is empty"),
    ],
)
def test_the_module_form_checks_its_options_too(
    tmp_path: Path, options: list[str], message: str
) -> None:
    empty = tmp_path / "tok"
    empty.write_text("")
    options = [o.format(empty=empty) for o in options]
    done = subprocess.run(
        [*SERVER, "--dir", str(tmp_path / "volumes"), *options],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == ExitCode.USAGE, done
    assert f"error: {message.format(empty=empty)}" in done.stderr, done
    assert "Traceback" not in done.stderr, done


@pytest.mark.parametrize("command", ["conductor", "worker"])
def test_a_metrics_port_out_of_range_is_a_usage_error(run: Run, command: str) -> None:
    """``--metrics-port 70000`` was an ``unexpected OverflowError`` (exit 1) once the
    conductor or worker had started; it is refused by the parser, as any bad option."""
    done = run(command, "--metrics-port", "70000", timeout=30)
    assert done.code == ExitCode.USAGE, done
    assert "argument --metrics-port: port '70000' out of range" in done.err, done


def test_a_command_that_outlives_its_timeout_is_killed(run: Run, tmp_path: Path) -> None:
    """The ``run`` fixture raised on a timeout but left the process running: a target that
    served forever (the empty --token-file of older code) outlived the whole test run."""
    volumes = str(tmp_path / "forever")
    with pytest.raises(subprocess.TimeoutExpired):
        run("target", "serve", "--dir", volumes, timeout=3)
    left = [
        p.name
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and volumes.encode() in _cmdline(p)
    ]
    assert left == [], f"still running: {left}"


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:  # exited meanwhile
        return b""
