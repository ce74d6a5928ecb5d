"""``pieceworks diff ID1 ID2`` checks its ids as every other command does: a usage error.

An empty or invalid id (``diff "" bk-...``, ``diff ../x bk-...``) passed the
parser and failed later with the reference ``invalid-name`` and no usage
line, where ``show ""`` and ``verify ../x`` say ``usage-error``.
"""

from __future__ import annotations

import json

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call


@pytest.mark.parametrize("ids", [["", "bk-a"], ["bk-a", " "], ["../x", "bk-a"]])
def test_an_empty_or_invalid_id_is_a_usage_error(call: Call, ids: list[str]) -> None:
    done = call("diff", *ids, "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error", error
    assert "argument ID" in error["message"], error
