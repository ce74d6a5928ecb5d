"""An ``exit_error``'s ``context`` never misstates the error's data.

``pieceworks find fast-backup --json`` named three closest registrations in
its message while its context said ``"closest": []``: the registrations are
no JSON data, and the list was emptied of them instead of left out.
"""

from __future__ import annotations

import json

from pieceworks.cli.exit_codes import ExitCode, failure_for
from pieceworks.protocols import PieceworksError
from tests.cli.conftest import Call


class _Opaque:
    """Not JSON data (no ``to_dict``)."""


class _WithData(PieceworksError):
    def __init__(self) -> None:
        super().__init__("failed")
        self.offsets = [0, 4096]
        self.things = [_Opaque(), _Opaque()]
        self.mixed = (1, _Opaque())
        self.none: list[int] = []


def test_a_list_that_is_not_all_json_data_is_left_out_not_emptied() -> None:
    context = failure_for(_WithData(), "failed").context
    assert context == {"offsets": [0, 4096], "none": []}


def test_find_without_a_match_gives_no_false_empty_closest(call: Call) -> None:
    done = call("find", "fast-backup", "--json")
    assert done.code == ExitCode.NOT_FOUND, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "no-match" and "closest: 'local'" in error["message"], error
    assert error.get("context", {}).get("closest") != [], error
