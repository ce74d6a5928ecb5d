"""One vocabulary in every ``--json`` (issue 12): every command run for real over one store.

Each command that prints a JSON document runs in its own process over one
small store (two backends, three stores, one of them encrypted, a jobboard
and a conductor), and the documents are checked together:

- every document, every row of an array and every ``exit_error`` names its
  ``message_type``;
- no field name has two JSON types across commands (``removed`` was a count
  in ``recover``, a list of backup ids in ``forget`` and ``true`` in ``key
  remove``; ``plan`` an object in ``backup`` and a list in ``show``; ...);
- an id is under a name ending in ``_id``, a list of ids under ``_ids``
  (``parent``, ``backup_id_a`` and ``kept`` held backup ids);
- times are Unix times (numbers), never ISO strings; a count is not named
  by a bare plural (``backups``), but for ``holes`` and ``manifests``;
- each deprecated old name (`DEPRECATED_FIELDS`) is still printed beside
  the field that replaces it, with its old shape, and docs/cli.md lists it.

Only the deprecated old names are left out of the type and id rules, and
only where their replacement is in the same object.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pieceworks.common_algorithms.json_fields import (
    DEPRECATED_FIELDS,
    REMOVED_IN,
    DeprecatedField,
)
from tests.cli.conftest import REPO, Result, Run, RunAll, config_file, with_plugins

KiB = 1024

#: Objects whose keys are names (data), not fields: their values are still checked.
DATA_MAPS = frozenset({"labels", "codecs", "enhancers_used", "missing", "atoms"})
#: ``config --json`` mirrors the configuration file: below these, keys are the file's options.
CONFIG_SECTIONS = frozenset({"backends", "stores", "engine", "jobs", "backup", "leases"})
#: Fields whose value is data of any type (a registration parameter's default value).
ANY_TYPE = frozenset({"default"})
ID = re.compile(
    r"(bk|rp)-[0-9a-f]{16}|[0-9a-f]{16}"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
TIMES = frozenset({"created", "posted", "finished", "first_created", "last_created"})
#: The bare plurals that are numbers (docs/cli.md): two counts and a unit; any other is a list.
PLURAL_COUNTS = frozenset({"holes", "manifests", "seconds"})
_ALIASES: dict[str, set[str]] = defaultdict(set)
for _dep in DEPRECATED_FIELDS:
    _ALIASES[_dep.name].add(_dep.replaced_by)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _is_alias(name: str, obj: dict[str, Any]) -> bool:
    """A deprecated old name printed beside its replacement."""
    return bool(_ALIASES.get(name, set()) & set(obj))


def _fields(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (field name, path, value) of a document, aliases and data keys left out."""
    if isinstance(value, list):
        for row in value:
            yield from _fields(row, path + "[]")
    elif isinstance(value, dict):
        for name, v in value.items():
            if _is_alias(name, value):
                continue
            here = f"{path}.{name}"
            yield name, here, v
            if name in DATA_MAPS and isinstance(v, dict):
                for key, item in v.items():
                    yield from _fields(item, f"{here}[{key}]")
            elif not (path == "" and name in CONFIG_SECTIONS and "config_file" in value):
                yield from _fields(v, here)


Docs = dict[str, Result]


def _volume(path: Path, size: int, seed: int) -> None:
    import random  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))


@pytest.fixture
def namespace() -> Iterator[str]:
    """A jobboard namespace of this test alone, its Redis keys removed afterwards."""
    name = f"pw-jsonfix-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)
    client.close()


def _run_everything(
    run: Run, run_all: RunAll, env: dict[str, str], home: Path, tmp_path: Path, namespace: str
) -> Docs:
    config = config_file(
        tmp_path,
        f'[backends.local]\ndriver = "file"\npath = "{home / "volumes"}"\n'
        f'[backends.other]\ndriver = "file"\npath = "{tmp_path / "volumes2"}"\n'
        f'[stores.local]\ndriver = "posix"\npath = "{home / "backups"}"\n'
        f'[stores.other]\ndriver = "posix"\npath = "{tmp_path / "backups2"}"\n'
        f'[stores.enc]\ndriver = "posix"\npath = "{tmp_path / "enc"}"\n'
        '[engine]\npersistence = "memory://"\n'
        f'[jobs]\njobboard = "redis://127.0.0.1:6379/{namespace}"\n'
        f'persistence = "sqlite:///{tmp_path / "jobs.db"}"\n',
    )
    e = {**env, "PIECEWORKS_CONFIG": str(config)}
    plugins = with_plugins(e)
    (tmp_path / "volumes2").mkdir()
    passwords = {}
    for n in (1, 2, 3):
        passwords[n] = tmp_path / f"pw{n}"
        passwords[n].write_text(f"passphrase-number-{n}-of-three")
    enc = ["--store", "enc", "--password-file"]
    docs: Docs = {}

    def one(label: str, *args: str, environment: dict[str, str] = e, code: int = 0) -> Any:
        done = run(*args, "--json", env=environment, timeout=300)
        assert done.code == code, done
        docs[label] = done
        return done.json() if done.out else None

    def many(commands: dict[str, list[str]], environment: dict[str, str] = e) -> None:
        labels = list(commands)
        results = run_all([[*commands[k], "--json"] for k in labels], env=environment, timeout=300)
        for label, done in zip(labels, results, strict=True):
            assert done.code == 0, done
            docs[label] = done

    vol1, vol2 = home / "volumes" / "vol-1", home / "volumes" / "vol-2"
    _volume(vol1, 512 * KiB, 1)
    _volume(vol2, 256 * KiB, 2)
    chunk = ["--chunk-size", "64KiB"]
    b1 = one("backup", "backup", "--volume", "vol-1", *chunk)["backup_id"]
    with open(vol1, "r+b") as f:
        f.write(b"changed" * 100)
    b2 = one(
        "backup incremental", "backup", "--volume", "vol-1", "--incremental", "--label", "env=prod"
    )["backup_id"]
    b3 = one("backup vol-2", "backup", "--volume", "vol-2", *chunk)["backup_id"]
    b4 = one("backup vol-2 again", "backup", "--volume", "vol-2", "--incremental")["backup_id"]

    many(
        {
            "plan backup": ["plan", "backup", "--volume", "vol-1"],
            "plan restore": ["plan", "restore", b1],
            "plan replicate": [
                "plan",
                "replicate",
                "--from-backend",
                "local",
                "--volume",
                "vol-1",
                "--to-backend",
                "other",
            ],
            "verify": ["verify", b1],
            "verify against source": ["verify", b2, "--against-source"],
            "list": ["list"],
            "volumes": ["volumes"],
            "show": ["show", b2],
            "stats": ["stats"],
            "check": ["check", "--read-data-subset", "100%"],
            "diff": ["diff", b1, b2],
            "recover dry run": ["recover", "--dry-run"],
            "config": ["config"],
            "find": ["find", "backup"],
            "forget dry run": ["forget", "--keep-last", "1", "--dry-run"],
            "jobs migrate": ["jobs", "migrate"],
        }
    )
    # Alone: run beside the commands above, a check's or verify's read lease defers it (75).
    one("prune dry run", "prune", "--dry-run")
    one("key init", *enc, str(passwords[1]), "key", "init")  # after recover --dry-run read it
    many(
        {
            "drivers": ["drivers"],
            "check-driver class": ["check-driver", "pieceworks.drivers.file:FileDriver"],
            "check-driver backend": ["check-driver", "--backend", "local"],
        },
        plugins,
    )
    one(
        "check-driver refused",
        "check-driver",
        "pieceworks_cli_testplugins.checks:HalfSnapshot",
        environment=plugins,
        code=1,
    )
    many(
        {
            "restore": ["restore", b1, "--volume", "vol-1-restored"],
            "restore to file": ["restore", b1, "--to-file", str(tmp_path / "restored.img")],
            "replicate": [
                "replicate",
                "--from-backend",
                "local",
                "--volume",
                "vol-2",
                "--to-backend",
                "other",
            ],
            "copy": ["copy", "--from-store", "local", "--to-store", "other"],
            "key add": [
                *enc,
                str(passwords[1]),
                "key",
                "add",
                "--new-password-file",
                str(passwords[2]),
            ],
            "demo": ["demo", "--size", "4MiB", "--dir", str(tmp_path / "demo")],
        }
    )
    first_key = docs["key init"].json()["key_id"]
    new = ["--new-password-file", str(passwords[3])]
    one("key passwd", *enc, str(passwords[2]), "key", "passwd", *new)  # the key added
    one("key list", *enc, str(passwords[1]), "key", "list")
    one("key remove", *enc, str(passwords[3]), "key", "remove", first_key)
    one("delete one", "--store", "other", "delete", b1)
    one("delete several", "--store", "other", "delete", b2, b3)
    one("recover", "--password-file", str(passwords[3]), "recover")
    groups = one("forget", "forget", "--keep-last", "1", "--prune")["groups"]
    assert {r["backup_id"] for g in groups for r in g["backups"] if not r["keep"]} == {b1, b3}
    one("prune", "prune")
    job = one("jobs post", "jobs", "post", "backup", "--volume", "vol-2", "--incremental")
    conductor = run("conductor", "--max-dispatches", "1", env=e, timeout=300)
    assert conductor.code == 0, conductor
    one("jobs list", "jobs", "list")
    one("jobs show", "jobs", "show", job["job_id"])
    one("jobs watch", "jobs", "watch", job["job_id"])
    cancelled = one("jobs post to cancel", "jobs", "post", "backup", "--volume", "vol-2")
    one("jobs cancel", "jobs", "cancel", cancelled["job_id"])
    one("show unknown", "show", "bk-0000000000000000", code=3)
    assert b4 in {r["backup_id"] for r in docs["list"].json()}
    return docs


def _documents(docs: Docs) -> Iterator[tuple[str, Any]]:
    """(label, document) for every stdout document and every ``exit_error`` line."""
    for label, done in docs.items():
        if done.out.strip():
            yield label, json.loads(done.out)
        for line in done.err.splitlines():
            if line.startswith("{"):
                yield f"{label} (exit_error)", json.loads(line)


def test_every_json_document_speaks_one_vocabulary(
    run: Run, run_all: RunAll, env: dict[str, str], home: Path, tmp_path: Path, namespace: str
) -> None:
    """Every command's ``--json`` over one store: consistent, and the old names kept."""
    documents = _run_everything(run, run_all, env, home, tmp_path, namespace)
    _check_consistency(documents)
    _check_deprecated(documents)


def _check_consistency(documents: Docs) -> None:
    kinds: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    problems: list[str] = []
    for label, doc in _documents(documents):
        rows = doc if isinstance(doc, list) else [doc]
        problems += [f"{label}: no message_type in {row}" for row in rows
                     if not isinstance(row, dict) or not row.get("message_type")]  # fmt: skip
        for name, path, value in _fields(doc):
            where = f"{label}: {path}"
            if name not in ANY_TYPE and value is not None:
                kinds[name][_kind(value)].append(where)
            values = value if isinstance(value, list) else [value]
            ids = [v for v in values if isinstance(v, str) and ID.fullmatch(v)]
            if ids and not name.endswith("_ids" if isinstance(value, list) else "_id"):
                problems.append(f"{where} holds the id(s) {ids} under a name not ending in _id(s)")
            if name.endswith("_id") and not isinstance(value, str | None):
                problems.append(f"{where}: an _id that is not a string: {value!r}")
            if name.endswith("_ids") and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                problems.append(f"{where}: an _ids that is not a list of strings: {value!r}")
            plural = re.fullmatch(r"[a-z]+s", name) and name not in PLURAL_COUNTS
            if plural and _kind(value) == "number":
                problems.append(f"{where}: a count named by a bare plural: {value!r}")
            if name in TIMES and not isinstance(value, int | float | None):
                problems.append(f"{where}: a time that is not a Unix time: {value!r}")
            if isinstance(value, str) and ISO_TIME.fullmatch(value[:16]) and len(value) <= 32:
                problems.append(f"{where}: an ISO time where a Unix time belongs: {value!r}")
    for name, by_kind in sorted(kinds.items()):
        if len(by_kind) > 1:
            problems.append(
                f"'{name}' has {len(by_kind)} types: "
                + "; ".join(f"{k} in {w[:3]}" for k, w in sorted(by_kind.items()))
            )
    assert not problems, "\n".join(problems)
    assert len(documents) >= 45, sorted(documents)


def _where(doc: Any, dep: DeprecatedField) -> list[dict[str, Any]]:
    """The objects of `doc` the deprecated field's path leads to that hold its replacement."""
    found: list[Any] = doc if isinstance(doc, list) else [doc]
    for step in dep.path.split(".")[:-1]:
        rows, name = step.endswith("[]"), step.removesuffix("[]")
        nxt: list[Any] = []
        for obj in found:
            value = obj.get(name) if isinstance(obj, dict) else None
            nxt += value if rows and isinstance(value, list) else [] if value is None else [value]
        found = nxt
    return [o for o in found if isinstance(o, dict) and dep.replaced_by in o]


#: Which documents are each command's (labels of `_run_everything`).
COMMAND_OF = {
    "backup": ("backup", "backup incremental", "backup vol-2", "backup vol-2 again"),
    "list": ("list",),
    "show": ("show",),
    "recover": ("recover", "recover dry run"),
    "forget": ("forget", "forget dry run"),
    "prune": ("prune", "prune dry run"),
    "delete": ("delete one", "delete several"),
    "stats": ("stats",),
    "diff": ("diff",),
    "copy": ("copy",),
    "demo": ("demo",),
    "restore": ("restore to file",),
    "key remove": ("key remove",),
    "jobs migrate": ("jobs migrate",),
    "jobs cancel": ("jobs cancel",),
    "replicate": ("replicate",),
    "jobs show": ("jobs show",),
    "jobs watch": ("jobs watch",),
    "jobs list": ("jobs list",),
    "drivers": ("drivers",),
    "check-driver": ("check-driver refused", "check-driver backend"),
}


def _check_deprecated(documents: Docs) -> None:
    """A plain rename's old name is printed wherever its replacement is, with the same
    value; every old name is beside its replacement in some document of its command
    (``delete``'s string ``blockers`` in the one-id form, which always had it)."""
    for dep in DEPRECATED_FIELDS:
        if dep.command == "conductor --events":  # event lines: tests/execution/test_events.py
            continue
        seen = 0
        for label in COMMAND_OF[dep.command]:
            for obj in _where(documents[label].json(), dep):
                if dep.same_value:  # a plain rename: the old name wherever the new one is
                    assert obj.get(dep.name, ...) == obj[dep.replaced_by], (dep, label, obj)
                seen += dep.name in obj
        assert seen, f"no document of '{dep.command}' shows {dep.path} beside {dep.replaced_by}"
    plain = documents
    assert plain["delete one"].json()["blockers"] == ""  # a line of text, as before
    assert plain["key remove"].json()["removed"] is True
    assert plain["jobs migrate"].json()["persistence"] == "migrated"
    assert isinstance(plain["recover"].json()["removed"], int)
    assert plain["forget"].json()["removed"] == plain["forget"].json()["removed_backup_ids"] != []
    assert isinstance(plain["show"].json()["plan"], list)
    assert isinstance(plain["backup"].json()["plan"], dict)
    assert plain["backup incremental"].json()["parent"] == plain["backup"].json()["backup_id"]
    assert plain["restore to file"].json()["target"] == "file"
    checks = plain["check-driver backend"].json()["checks"]
    assert checks and all(c["result"] == c["outcome"] for c in checks)


def test_docs_list_every_deprecated_field_with_its_replacement() -> None:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split("### Deprecated JSON fields", 1)[1].split("\n## ", 1)[0]
    assert f"release {REMOVED_IN}" in section
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for dep in DEPRECATED_FIELDS:
        assert any(
            f"`{dep.command}" in row and f"`{dep.name}`" in row and f"`{dep.replaced_by}`" in row
            for row in rows
        ), f"docs/cli.md does not list {dep.command}: {dep.path} -> {dep.replaced_by}"


def test_a_damaged_key_file_is_a_row_of_key_list_json(
    run: Run, env: dict[str, str], home: Path
) -> None:
    """``key list --json`` left a damaged key file out (only the text listed it): it is a
    row ``{key_id, unreadable}``, as ``list --json`` gives an unreadable manifest."""
    e = {**env, "PIECEWORKS_PASSWORD": "the first passphrase"}
    assert run("key", "init", env=e).code == 0
    assert run("key", "add", env={**e, "PIECEWORKS_NEW_PASSWORD": "a second one"}).code == 0
    first, second = sorted(k["key_id"] for k in run("key", "list", "--json").json()["keys"])
    (home / "backups" / "keys" / f"{first}.json").write_text("garbage")
    listed = run("key", "list", "--json")
    assert listed.code == 4, listed
    rows = {r["key_id"]: r for r in listed.json()["keys"]}
    assert set(rows) == {first, second} and "created" in rows[second], rows
    assert rows[first] == {
        "key_id": first,
        "unreadable": f"key file keys/{first}.json is not valid JSON",
    }
    assert json.loads(listed.err.splitlines()[-1])["reference"] == "corruption-error"
