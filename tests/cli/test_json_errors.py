"""``--json`` messages name their kind; a failure ends with a JSON ``exit_error``.

As restic's JSON output: every document has ``message_type`` (a command's
result is a ``summary``; rows of ``list``/``volumes``/``find`` name their
own kind), and a failing command under ``--json`` ends with one line on
stderr, ``{"message_type": "exit_error", "code", "reference", "message"}``
(plus ``hint`` and ``context`` when there are), whose ``reference`` (pip's
DiagnosticPipError) tells one exit 1 from another. The exit code is the
same as without ``--json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import pieceworks.common_algorithms as algorithms
from pieceworks.cli.exit_codes import ExitCode
from pieceworks.common_algorithms import keys
from pieceworks.common_algorithms.gc.leases import BackupInProgress, GCLockTimeout
from pieceworks.common_algorithms.operations.plan import NoEligibleStrategy, Plan, StrategyChoice
from pieceworks.protocols import PieceworksError
from tests.cli.conftest import Call, Result, write_volume
from tests.support.backups import make_backup

MiB = 1024 * 1024
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def exit_error(result: Result) -> dict[str, Any]:
    """The ``exit_error`` document: the last line of stderr, which must be one."""
    doc = json.loads(result.err.strip().splitlines()[-1])
    assert doc["message_type"] == "exit_error", result
    assert doc["code"] == result.code and KEBAB.match(doc["reference"]), doc
    assert "pieceworks: error:" not in result.err, result
    return dict(doc)


def test_every_json_document_names_its_kind(call: Call, home: Path) -> None:
    """Summaries say ``summary``; list and volumes rows say what they are."""
    write_volume(home / "volumes", "vol-1", MiB)
    backup = call("backup", "--volume", "vol-1", "--json")
    assert backup.code == 0, backup
    assert backup.json()["message_type"] == "summary" and backup.json()["backup_id"]
    [row] = call("list", "--json").json()
    assert row["message_type"] == "backup" and row["volume_id"] == "vol-1"
    [volume] = call("volumes", "--json").json()
    assert volume == {"message_type": "volume", "volume_id": "vol-1", "size": MiB}
    assert call("config", "--json").json()["message_type"] == "summary"
    assert "message_type" not in call("backup", "--volume", "vol-1").out  # text mode: no JSON


@pytest.mark.parametrize(
    ("argv", "code", "reference"),
    [
        (["backup", "--volume", "nosuch"], ExitCode.NOT_FOUND, "volume-not-found"),
        (["verify", "bk-nosuch"], ExitCode.NOT_FOUND, "backup-not-found"),
        (["backup"], ExitCode.USAGE, "usage-error"),
        (["verify", "../up"], ExitCode.USAGE, "usage-error"),
        (["volumes", "--backend", "nosuch"], ExitCode.NOT_FOUND, "backend-not-found"),
        (["list", "--config", "/nonexistent/pieceworks.toml"], ExitCode.USAGE, "config-error"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_a_failing_command_ends_with_an_exit_error_and_the_same_code(
    call: Call, argv: list[str], code: ExitCode, reference: str
) -> None:
    """Parseable JSON on stderr with code and reference; the text form is unchanged."""
    text = call(*argv)
    assert text.code == code and "error: " in text.err, text
    failed = call(*argv, "--json")
    assert failed.code == code and failed.out == "", failed
    doc = exit_error(failed)
    assert doc["reference"] == reference, doc
    assert text.err.strip().splitlines()[-1].endswith(doc["message"].split(": ", 1)[-1]), doc


def test_wrong_password_is_told_apart_from_other_usage_errors(
    call: Call, env: dict[str, str], home: Path
) -> None:
    """``wrong-password``, exit 2, with a hint naming where the passphrase comes from."""
    assert call("key", "init", env={**env, "PIECEWORKS_PASSWORD": "Right-Passphrase-1"}).code == 0
    wrong = call("list", "--json", env={**env, "PIECEWORKS_PASSWORD": "Wrong-Passphrase-2"})
    assert wrong.code == ExitCode.USAGE, wrong
    doc = exit_error(wrong)
    assert doc["reference"] == "wrong-password" and "PIECEWORKS_PASSWORD" in doc["hint"], doc


def _nothing_eligible() -> Plan:
    choice = StrategyChoice("direct-stream", False, "the volume is in use", needs=("snapshot",))
    return Plan("backup", "local", (choice,))


@pytest.mark.parametrize(
    ("error", "reference", "context_key"),
    [
        (GCLockTimeout("a collection holds the lock"), "gc-lock-timeout", None),
        (BackupInProgress("'bk-1' is already being written"), "backup-in-progress", None),
        (NoEligibleStrategy(_nothing_eligible()), "no-eligible-strategy", "plan"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_exit_1_errors_carry_their_own_reference_hint_and_context(
    call: Call,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: PieceworksError,
    reference: str,
    context_key: str | None,
) -> None:
    """Three failures that all exit 1 are told apart by ``reference``; each has a hint."""
    write_volume(home / "volumes", "vol-1", MiB)

    def fail(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr(algorithms, "plan_backup", fail)
    failed = call("backup", "--volume", "vol-1", "--json")
    assert failed.code == ExitCode.FAILED, failed
    doc = exit_error(failed)
    assert doc["reference"] == reference and doc["hint"], doc
    assert doc["message"] == str(error)
    if context_key is not None:
        assert doc["context"][context_key]["strategies"][0]["name"] == "direct-stream", doc


def test_verify_and_check_print_their_summary_then_the_exit_error(call: Call, home: Path) -> None:
    """A damaged chunk: the summary on stdout, ``verify-problems``/``check-problems``, exit 1."""
    made = make_backup(home, "vol-1", seed=1)
    manifest = json.loads((home / "backups" / "manifests" / f"{made.backup_id}.json").read_bytes())
    digest = str(manifest["manifest"]["chunks"][0][2])
    chunk = home / "backups" / "chunks" / digest[:2] / digest
    chunk.write_bytes(b"\0" * chunk.stat().st_size)

    checked = call("check", "--read-data-subset", "100%", "--json")
    assert checked.code == ExitCode.FAILED, checked
    summary = checked.json()
    assert summary["message_type"] == "summary" and summary["problems"], summary
    assert exit_error(checked)["reference"] == "check-problems"

    verified = call("verify", made.backup_id, "--no-quarantine", "--json")
    assert verified.code == ExitCode.FAILED, verified
    assert verified.json()["message_type"] == "summary" and verified.json()["problems"]
    doc = exit_error(verified)
    assert doc["reference"] == "verify-problems" and made.backup_id in doc["message"], doc


def test_every_error_class_has_a_kebab_case_reference() -> None:
    """Set on the class or derived from its name (``GCLockTimeout`` -> ``gc-lock-timeout``)."""
    assert keys.WrongPassword.reference == "wrong-password"
    assert keys.KeyNotFound.reference == "key-not-found"  # derived, not NotFound's

    def walk(cls: type[PieceworksError]) -> list[type[PieceworksError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in walk(sub))]

    classes = walk(PieceworksError)
    assert len(classes) > 20
    for cls in classes:
        assert KEBAB.match(cls.reference), (cls, cls.reference)
