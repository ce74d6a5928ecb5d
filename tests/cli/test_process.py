"""The ``pieceworks`` program ends at once (`pieceworks.cli.process`) and loses nothing.

Each probe runs in a fresh interpreter, as the program does, and ends with
`pieceworks.cli.process.end`: what a normal exit shows outside the process
(buffered output, logging, ``atexit`` functions, a thread still working,
the exit status) must be there all the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli.conftest import COMMAND

MiB = 1 << 20


def _probe(body: str, tmp_path: Path, stdout: int = subprocess.PIPE) -> tuple[int, bytes, bytes]:
    """Run `body` after ``from pieceworks.cli.process import end``: (status, stdout, stderr)."""
    script = tmp_path / "probe.py"
    script.write_text("from pieceworks.cli.process import end\n" + body, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as usual
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=stdout, stderr=subprocess.PIPE, env=env
    )
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out or b"", err


def test_buffered_output_logging_and_atexit_functions_all_happen(tmp_path: Path) -> None:
    """2 MiB written to a buffered stdout (more than a pipe holds), a log record held by a
    buffering handler, an atexit function: all out, and the status is the one given."""
    marker = tmp_path / "atexit-ran"
    status, out, err = _probe(
        "import atexit, logging, logging.handlers, sys\n"
        "held = logging.handlers.MemoryHandler(100, target=logging.StreamHandler(sys.stderr))\n"
        "logging.getLogger('probe').addHandler(held)\n"
        "logging.getLogger('probe').warning('held until logging shuts down')\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
        "sys.stdout.write('x' * (2 << 20))\n"
        "end(3)\n",
        tmp_path,
    )
    assert status == 3
    assert out == b"x" * (2 * MiB)
    assert b"held until logging shuts down" in err
    assert marker.exists()


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    """A non-daemon thread alive at the end: a normal exit, which waits for it to finish."""
    marker = tmp_path / "thread-finished"
    status, _, err = _probe(
        "import threading, time\n"
        "def work():\n"
        "    time.sleep(0.3)\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "threading.Thread(target=work).start()\n"
        "end(4)\n",
        tmp_path,
    )
    assert status == 4, err
    assert marker.exists()


def test_an_unflushable_stdout_is_status_120_as_python_gives(tmp_path: Path) -> None:
    """stdout's reader went away before the last flush: status 120 for a command that
    succeeded (what CPython's own exit gives), the command's own status otherwise."""
    body = "import sys\nsys.stdout.write('x' * 1000)\nend({code})\n"
    for code, status in ((0, 120), (5, 5)):
        read, write = os.pipe()
        os.close(read)
        got, _, err = _probe(body.format(code=code), tmp_path, stdout=write)
        os.close(write)
        assert got == status, err


def test_the_program_keeps_its_exit_codes(tmp_path: Path) -> None:
    """The installed program (or python -m pieceworks) ends with main's status: 0, 2, 3."""
    env = {"PIECEWORKS_HOME": str(tmp_path / "pw"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for argv, status in ((["--version"], 0), (["--no-such-option"], 2), (["show", "bk-0"], 3)):
        done = subprocess.run(
            [*COMMAND, *argv], env=env, capture_output=True, timeout=120, check=False
        )
        assert done.returncode == status, (argv, done.stderr)
    version = subprocess.run(
        [sys.executable, "-m", "pieceworks", "--version"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.startswith(b"pieceworks ")


def _closed_stdout() -> None:
    os.close(1)


def test_output_that_cannot_be_written_is_one_clear_error(env: dict[str, str], home: Path) -> None:
    """> /dev/full and >&-: exit 1 with one line saying the output is lost (``output-error``
    under --json), never an unexpected error or a traceback; a backup whose summary cannot
    be printed is still written."""
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "one").write_bytes(os.urandom(MiB))
    with open("/dev/full", "w") as full:
        cases: list[tuple[list[str], dict[str, Any], str]] = [
            (["backup", "--volume", "one"], {"stdout": full}, "No space left"),
            (["list"], {"stdout": full}, "No space left"),
            (["--version"], {"stdout": full}, "cannot write the version"),
            (["list"], {"preexec_fn": _closed_stdout}, "standard output is closed"),
            (["list", "--json"], {"stdout": full}, '"reference":"output-error"'),
        ]
        for argv, streams, words in cases:
            done = subprocess.run(
                [*COMMAND, *argv], env=env, stderr=subprocess.PIPE, timeout=120, check=False,
                **streams,
            )  # fmt: skip
            err = done.stderr.decode()
            assert done.returncode == 1, (argv, err)
            assert words in err and "Traceback" not in err and "unexpected" not in err, (argv, err)
    listing = subprocess.run(
        [*COMMAND, "list", "--json"], env=env, capture_output=True, timeout=120, check=True
    )
    assert len(json.loads(listing.stdout)) == 1, "the backup was written all the same"
