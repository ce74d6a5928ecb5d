"""``pieceworks volumes`` on a backend where one volume cannot be opened."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pieceworks.cli.exit_codes import ExitCode
from tests.cli.conftest import Call

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")


def test_one_volume_that_cannot_be_opened_harms_only_itself(
    call: Call, tmp_path: Path, bare_env: dict[str, str]
) -> None:
    """A qcow2 image with a backing file (which the driver refuses) made `volumes` fail
    with that one error and list nothing: the other volumes are listed, the bad one is
    UNREADABLE with its reason (a JSON row with "unreadable"), and the exit code is 1."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("base", "other"):
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(images / f"{name}.qcow2"), "1M"],
            check=True,
        )
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
         str(images / "child.qcow2")],
        check=True,
    )  # fmt: skip
    config = tmp_path / "pw.toml"
    config.write_text(f'[backends.q]\ndriver = "qcow2"\npath = "{images}"\n')
    env = {**bare_env, "PIECEWORKS_CONFIG": str(config)}

    text = call("volumes", env=env)
    assert text.code == ExitCode.FAILED, text
    rows = {line.split()[0]: line.split()[1:] for line in text.out.splitlines()[1:]}
    assert rows == {"base": ["1.0", "MiB"], "child": ["UNREADABLE"], "other": ["1.0", "MiB"]}
    assert "child" in text.err and "backing file" in text.err, text

    doc = call("volumes", "--json", env=env)
    assert doc.code == ExitCode.FAILED, doc
    by_id = {r["volume_id"]: r for r in json.loads(doc.out)}
    assert by_id["base"]["size"] == by_id["other"]["size"] == 1024 * 1024
    assert by_id["child"]["size"] is None and "backing file" in by_id["child"]["unreadable"]
