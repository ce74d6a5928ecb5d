"""``copy --from-store X --to-store X`` is a usage error, not a configuration error.

It was ``config-error`` with the hint "`pieceworks config` shows the
configuration in use": nothing is wrong with the configuration, only with
the command line.
"""

from __future__ import annotations

import json

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call


def test_copying_a_store_onto_itself_is_a_usage_error(call: Call) -> None:
    done = call("copy", "--from-store", "local", "--to-store", "local", "--json")
    assert done.code == ExitCode.USAGE, done
    error = json.loads(done.err.strip().splitlines()[-1])
    assert error["reference"] == "usage-error" and "both 'local'" in error["message"], error
    assert "hint" not in error, error
