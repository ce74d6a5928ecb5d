"""Fixtures shared by the driver tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The volume directory (a sibling of it stands for "outside")."""
    path = tmp_path / "volumes"
    path.mkdir()
    return path
