"""Our TaskFlow stubs catch misuse that `ignore_missing_imports` would let through."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MISUSE = ROOT / "tests" / "typings" / "taskflow_misuse.py"


def test_every_marked_misuse_is_a_mypy_error_and_nothing_else() -> None:
    """flow.add("x"), wrong execute arguments, bad engine options... each reported."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"), str(MISUSE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = MISUSE.read_text().splitlines()
    expected = {i + 1 for i, line in enumerate(lines) if "  # E:" in line}
    reported = {
        int(m.group(1))
        for m in re.finditer(
            rf"^{re.escape(str(MISUSE.relative_to(ROOT)))}:(\d+): error", result.stdout, re.M
        )
    }
    assert expected and reported == expected, result.stdout
