"""``--json`` output stays valid JSON, with stable names, whatever the secrets are.

Secrets are masked in the data before it is dumped; masking the dumped text
instead turned ``"incremental": false`` into ``"incremental": ***`` for a
passphrase ``false`` (a document no parser reads) and the ``exit_error``
reference ``wrong-password`` into ``***-password`` for a passphrase
``wrong``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode, Failure
from pieceworks.cli.masking import Masker
from pieceworks.cli.output import Output
from tests.cli.conftest import MiB, Run, write_volume


def _output(secrets: list[str]) -> tuple[Output, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Output(Masker(secrets), json_mode=True, stdout=out, stderr=err), out, err


def test_a_document_dumps_as_json_whatever_the_secret_and_strings_are_still_masked() -> None:
    output, out, _ = _output(["false", "2026", "null"])
    output.data({"incremental": False, "size": 20261234, "parent": None, "path": "/a/2026/b"})
    doc = json.loads(out.getvalue())
    assert doc == {
        "message_type": "summary",
        "incremental": False,
        "size": 20261234,
        "parent": None,
        "path": "/a/***/b",
    }


def test_a_key_holding_a_secret_is_masked() -> None:
    output, out, _ = _output(["s3cr3t-value"])
    output.data([{"labels": {"s3cr3t-value": "x"}}], "backup")
    assert json.loads(out.getvalue()) == [{"message_type": "backup", "labels": {"***": "x"}}]


def test_an_exit_error_keeps_its_reference_and_kind_and_masks_its_message() -> None:
    output, _, err = _output(["wrong", "error"])
    output.fail(
        Failure(ExitCode.USAGE, "wrong-password", "wrong passphrase for store", "type it again")
    )
    doc = json.loads(err.getvalue())
    assert doc["message_type"] == "exit_error" and doc["reference"] == "wrong-password"
    assert doc["code"] == 2 and doc["message"] == "*** passphrase for store"


def test_an_encrypted_store_with_a_word_for_a_passphrase_gives_valid_json(
    run: Run, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    write_volume(home / "volumes", "v", MiB)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text("false\n", encoding="utf-8")
    wrong.write_text("wrong\n", encoding="utf-8")
    assert run("key", "init", "--password-file", str(right), "-q").code == 0
    done = run("backup", "--volume", "v", "--password-file", str(right), "--json", "-q")
    assert done.code == 0, done
    assert done.json()["incremental"] is False  # not ***
    refused = run("list", "--password-file", str(wrong), "--json")
    assert refused.code == ExitCode.USAGE, refused
    error = json.loads(refused.err.strip().splitlines()[-1])
    assert error["reference"] == "wrong-password", error
    assert error["message"].startswith("*** passphrase"), error  # the passphrase is masked
