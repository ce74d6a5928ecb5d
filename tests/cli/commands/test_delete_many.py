"""``pieceworks delete A B`` with an unknown id fails as ``delete A`` does: ``backup-not-found``.

Several ids were refused with the generic ``not-found`` reference (and no
hint), one unknown id with ``backup-not-found``: a script testing the
documented reference missed the first.
"""

from __future__ import annotations

import json
from pathlib import Path

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call
from tests.support.backups import make_backup


def test_an_unknown_id_among_several_is_backup_not_found_and_deletes_nothing(
    call: Call, home: Path
) -> None:
    known = make_backup(home, "vol-1", seed=1).backup_id
    for ids in ([known, "bk-nosuchbackup"], ["bk-nosuchbackup"]):
        done = call("delete", *ids, "--json")
        assert done.code == ExitCode.NOT_FOUND, done
        error = json.loads(done.err.strip().splitlines()[-1])
        assert error["reference"] == "backup-not-found", error
        assert error["hint"] == "`pieceworks list` shows the backups of the store", error
    listed = call("list", "--json").json()
    assert [row["backup_id"] for row in listed] == [known]
