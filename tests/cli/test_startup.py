"""Quick commands stay quick: what ``--help`` and ``list`` import, lazy packages.

TaskFlow, SQLAlchemy, networkx, jsonschema and oslo.utils take most of a
second to import on a loaded machine; only a command that runs a flow may
import them. Each check runs the command's `main` in a fresh interpreter
and reads its ``sys.modules`` afterwards.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Call

#: Imported only when a flow runs (or a size is parsed). ``uuid`` imports ``platform``
#: (5-11 ms, for regular expressions it compiles): pieceworks makes its random names
#: with ``secrets`` instead. ``tomllib`` (about 10 ms) loads only to read a configuration
#: file: these commands run on the embedded defaults, without one.
HEAVY = (
    "taskflow",
    "networkx",
    "sqlalchemy",
    "jsonschema",
    "oslo_utils",
    "automaton",
    "uuid",
    "platform",
    "tomllib",
)

_PROBE = """
import json, sys
from pieceworks.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _probe(probe: str, argv: list[str], home: Path) -> dict[str, Any]:
    """Run `probe` (which calls main with `argv`) in a fresh interpreter under `home`; the
    JSON report it prints last on stderr, after checking that main returned 0."""
    env = {**os.environ, "HOME": str(home), "PIECEWORKS_HOME": str(home / "pw")}
    env.pop("PIECEWORKS_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return report


def _modules_after(argv: list[str], home: Path) -> set[str]:
    return {m.partition(".")[0] for m in _probe(_PROBE, argv, home)["modules"]}


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["list"], ["list", "--json"], ["volumes"], ["config"]],
    ids=" ".join,
)
def test_quick_commands_import_no_flow_machinery(argv: list[str], tmp_path: Path) -> None:
    """``--help``, ``list`` (empty store), ``volumes`` and ``config`` import none of HEAVY."""
    loaded = _modules_after(argv, tmp_path)
    assert not loaded & set(HEAVY), f"pieceworks {' '.join(argv)} imported {loaded & set(HEAVY)}"


@pytest.mark.parametrize(
    "package", ["pieceworks.common_algorithms", "pieceworks.registry", "pieceworks.execution"]
)
def test_lazy_packages_export_every_public_name(package: str) -> None:
    """Each name of ``__all__`` has a home module and resolves; nothing else is exported."""
    module = importlib.import_module(package)
    assert set(module.__all__) == set(module._WHERE)
    for name in module.__all__:
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = module.no_such_name


def test_backup_is_the_function_whichever_import_came_first() -> None:
    """Importing the submodule ``backup`` does not shadow the function of the same name."""
    probe = (
        "import pieceworks.common_algorithms.operations.backup\n"
        "import pieceworks.common_algorithms.operations.restore\n"
        "from pieceworks.common_algorithms import backup, restore, verify\n"
        "assert callable(backup) and backup.__name__ == 'backup', backup\n"
        "assert callable(restore) and callable(verify)\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)


def test_deferred_oslo_modules_work_when_used() -> None:
    """netutils, msgpackutils and netaddr (through jsonutils) load and work on first use."""
    probe = (
        "import sys\n"
        "import pieceworks.common_algorithms.runner\n"
        "from oslo_utils import netutils\n"
        "from oslo_serialization import jsonutils, msgpackutils\n"
        "assert 'psutil' not in sys.modules and 'msgpack' not in sys.modules\n"
        "assert netutils.urlsplit('redis://host:6379/0').port == 6379\n"
        "assert msgpackutils.loads(msgpackutils.dumps({'a': [1, 2]})) == {'a': [1, 2]}\n"
        "import netaddr\n"
        "assert jsonutils.to_primitive(netaddr.IPAddress('10.0.0.1')) == '10.0.0.1'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)


def test_a_backup_runs_taskflow_without_importing_jsonschema(tmp_path: Path) -> None:
    """TaskFlow's schema_utils (jsonschema), oslo's netutils (psutil) and msgpackutils load
    on first use only: a backup never uses them."""
    home = tmp_path / "home"
    (home / "pw" / "volumes").mkdir(parents=True)
    (home / "pw" / "volumes" / "one").write_bytes(os.urandom(1 << 16))
    loaded = _modules_after(["backup", "--volume", "one", "-q"], home)
    assert "taskflow" in loaded
    assert not loaded & {"jsonschema", "psutil", "msgpack"}


def test_deferred_schema_utils_still_validates_failures() -> None:
    """The deferred module loads when used: a TaskFlow failure validates, a bad one is refused."""
    probe = (
        "import sys\n"
        "import pieceworks.common_algorithms.runner\n"
        "from taskflow import exceptions\n"
        "from taskflow.types.failure import Failure\n"
        "assert 'jsonschema' not in sys.modules\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    failure = Failure()\n"
        "Failure.validate(failure.to_dict())\n"
        "assert 'jsonschema' in sys.modules\n"
        "try:\n"
        "    Failure.validate({'exc_type_names': 5})\n"
        "except exceptions.InvalidFormat:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('an invalid failure validated')\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)


_STRUTILS_PROBE = """
import json, sys
import re._compiler
compiled = []
real_compile = re._compiler.compile
def counting(pattern, flags=0):
    compiled.append(pattern)
    return real_compile(pattern, flags)
re._compiler.compile = counting
if sys.argv[1] == "deferred":
    import pieceworks.common_algorithms  # puts the deferring finder in place
before = len(compiled)
from oslo_utils import strutils
at_import = len(compiled) - before
messages = [
    "password=secret", "admin_pass='x' token = 'abc'", "<password>p</password>",
    '{"auth_token": "t"}', "--password secret --other v", "nothing to hide", "PassPhrase=z9",
]
report = {
    "at_import": at_import,
    "masked": [strutils.mask_password(m) for m in messages],
    "dict": strutils.mask_dict_password({"password": "p", "nested": {"token": "t"}, "x": 1}),
    "bytes": [strutils.string_to_bytes(t, unit_system=u) for t, u in
              (("1KiB", "IEC"), ("2MB", "SI"), ("3Gb", "mixed"))],
    "bool": [strutils.bool_from_string(v) for v in ("yes", "0", "on", "nope")],
    "slug": strutils.to_slug("Hello, World -- again"),
    "split": strutils.split_path("/a/b/c", 1, 3),
    "repr": repr(strutils.SLUGIFY_STRIP_RE),
}
try:
    strutils.string_to_bytes("12 furlongs")
except ValueError as exc:
    report["error"] = str(exc)
print(json.dumps(report))
"""


def _strutils(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _STRUTILS_PROBE, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_oslo_strutils_compiles_its_430_patterns_only_when_used() -> None:
    """Importing oslo.utils' strutils (TaskFlow's engine needs its bool_from_string)
    compiled about 430 regular expressions for mask_password (80 ms); deferred, the
    import compiles almost none, and every function answers as the real module does."""
    plain = _strutils("plain")
    deferred = _strutils("deferred")
    assert plain["at_import"] > 400  # what the deferral saves: fails if oslo.utils changed
    assert deferred["at_import"] < 30, deferred["at_import"]  # its imports compile their own
    plain.pop("at_import")
    deferred.pop("at_import")
    assert deferred == plain
    assert deferred["masked"][0] == "password=***"


_GC_PROBE = """
import gc, json, re, sys
seen = {}
def hook(event, args):
    if event == "import" and args[0] == "networkx":
        seen.setdefault(args[0], gc.isenabled())
    elif event == "open" and re.search(r"action_engine/(__pycache__/)?engine\\.", str(args[0])):
        seen.setdefault("engine", gc.isenabled())
    elif event == "open" and "/chunks/" in str(args[0]) and "data" not in seen:
        seen["data"] = [gc.isenabled(), gc.get_freeze_count() > 0]
    elif event == "open" and "/backups/" in str(args[0]) and "manifest" not in seen:
        seen["manifest"] = gc.isenabled()
sys.addaudithook(hook)
from pieceworks.cli.main import main
code = main(sys.argv[1:])
after = [gc.isenabled(), gc.get_freeze_count()]
print(json.dumps({"code": code, "seen": seen, "after": after}), file=sys.stderr)
"""


def _gc_seen(argv: list[str], home: Path) -> dict[str, Any]:
    """Run `argv` in a fresh interpreter; when the collector was on (see `_GC_PROBE`)."""
    report = _probe(_GC_PROBE, argv, home)
    assert report["after"] == [True, 0], "main must leave the collector on and nothing frozen"
    return report


def test_a_flow_command_imports_with_the_collector_off_and_moves_data_with_it_on(
    tmp_path: Path,
) -> None:
    """backup: TaskFlow, networkx and the engine load with the collector off (start-up, see
    pieceworks.cli.startup); the data path runs with it on, start-up's objects frozen; a
    non-flow command (list, restore --to-file) runs with it on; main leaves it as it was."""
    home = tmp_path / "home"
    (home / "pw" / "volumes").mkdir(parents=True)
    (home / "pw" / "volumes" / "one").write_bytes(os.urandom(1 << 20))
    backup = _gc_seen(["backup", "--volume", "one", "-q"], home)["seen"]
    assert backup == {"networkx": False, "engine": False, "data": [True, True], "manifest": True}
    listing = _gc_seen(["list", "--json"], home)["seen"]
    assert listing == {"manifest": True}, listing
    backup_id = json.loads(
        subprocess.run(
            [sys.executable, "-m", "pieceworks", "list", "--json"],
            env={**os.environ, "HOME": str(home), "PIECEWORKS_HOME": str(home / "pw")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]["backup_id"]
    restored = _gc_seen(["restore", backup_id, "--to-file", str(tmp_path / "out"), "-q"], home)
    assert restored["seen"] == {"manifest": True, "data": [True, True]}, restored


def test_main_gives_the_collector_back_as_it_found_it() -> None:
    """In a process that calls main (the tests do), after a usage error, a failure or a
    success the collector is as it was and nothing stays frozen by main."""
    probe = (
        "import gc\n"
        "from pieceworks.cli.main import main\n"
        "for argv in (['--no-such-option'], ['show', 'bk-0000000000000000'], ['--version']):\n"
        "    main(argv)\n"
        "    assert gc.isenabled() and gc.get_freeze_count() == 0, argv\n"
        "gc.disable()\n"
        "main(['--version'])\n"
        "assert not gc.isenabled(), 'a collector turned off by the caller stays off'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120, capture_output=True)


def test_deferred_asyncio_and_xmlrpc_work_when_used() -> None:
    """After a flow has run without them, asyncio and xmlrpc.client load on first use."""
    probe = (
        "import sys\n"
        "import pieceworks.common_algorithms.runner\n"
        "from oslo_serialization import jsonutils\n"
        "import asyncio, xmlrpc.client\n"
        "assert type(sys.modules['asyncio']).__name__ == '_LazyModule'\n"
        "async def answer():\n"
        "    await asyncio.sleep(0)\n"
        "    return 42\n"
        "assert asyncio.run(answer()) == 42\n"
        "when = xmlrpc.client.DateTime('20261130T07:30:00')\n"
        "assert jsonutils.to_primitive(when) == '2026-11-30T07:30:00.000000'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)


def test_a_flow_command_whose_engine_cannot_load_fails_before_any_work(
    call: Call, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    """An engine that cannot be imported (a broken installation): exit 1 with a message that
    says so, before the backup reads or stores anything."""
    from pieceworks.common_algorithms import runner  # noqa: PLC0415

    def broken(name: str) -> None:
        raise ValueError(f"no TaskFlow engine called {name!r} is installed")

    monkeypatch.setattr(runner, "load_engine", broken)
    (home / "volumes").mkdir(parents=True)
    (home / "volumes" / "one").write_bytes(os.urandom(1 << 16))
    result = call("backup", "--volume", "one")
    assert result.code == 1
    assert "cannot run flows: no TaskFlow engine called 'serial' is installed" in result.err
    assert not (home / "backups").exists() or not any((home / "backups").rglob("chunks/*/*"))
