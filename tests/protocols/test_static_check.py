"""mypy with the mypy-zope plugin catches broken drivers before they run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "protocols" / "broken_driver.py"


def test_mypy_reports_missing_method_and_wrong_signature() -> None:
    """Both errors of the broken example driver are reported, with clear messages."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"), str(BROKEN)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 1, out
    assert (
        "'MissingMethodDriver' is missing following 'ISnapshot' interface members:"
        " delete_snapshot." in out
    ), out
    assert 'Argument 1 of "open_read" is incompatible with supertype' in out, out
    assert "Found 2 errors" in out or "Found 3 errors" in out, out
