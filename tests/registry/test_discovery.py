"""Drivers are discovered through entry points; broken ones are reported, not dropped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pieceworks.protocols import DriverNotFound
from pieceworks.registry import DRIVERS_NAMESPACE, DriverLoadError, discover, load_factory


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed distribution (dist-info on sys.path) with a good and a broken driver."""
    (tmp_path / "pw_plugin_good.py").write_text("class Driver:\n    pass\n\nVALUE = 42\n")
    (tmp_path / "pw_plugin_broken.py").write_text("import no_such_module_for_pieceworks\n")
    (tmp_path / "pw_plugin_lazy.py").write_text("class Driver:\n    pass\n")
    info = tmp_path / "pw_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pw-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{DRIVERS_NAMESPACE}]\n"
        "plugin-good = pw_plugin_good:Driver\n"
        "plugin-broken = pw_plugin_broken:Driver\n"
        "plugin-value = pw_plugin_good:VALUE\n"
        "plugin-lazy = pw_plugin_lazy:Driver\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_installed_drivers_are_found_by_name() -> None:
    """The reference drivers declared in pyproject.toml are discovered."""
    found = discover()
    assert "file" in found.factories
    assert found.factories["file"].__name__ == "FileDriver"


def test_a_driver_that_fails_to_import_is_reported_with_its_error(plugin_dist: Path) -> None:
    """An import error is kept with the entry point's name and target."""
    found = discover()
    assert "plugin-good" in found.factories
    assert "plugin-broken" not in found.factories
    error = found.failures["plugin-broken"]
    assert error.startswith("pw_plugin_broken:Driver: ModuleNotFoundError")
    assert "no_such_module_for_pieceworks" in error
    with pytest.raises(DriverLoadError, match="'plugin-broken' failed to load: pw_plugin_broken"):
        load_factory("plugin-broken")
    assert load_factory("plugin-good").__name__ == "Driver"


def test_an_unknown_driver_lists_what_is_installed() -> None:
    """Asking for a driver that is not installed names the installed ones."""
    with pytest.raises(DriverNotFound, match=r"no pieceworks.drivers entry point named 'nope' "):
        load_factory("nope")
    with pytest.raises(DriverNotFound, match=r"installed: .*file"):
        load_factory("nope")


def test_an_entry_point_naming_something_not_callable_is_refused(plugin_dist: Path) -> None:
    """A factory must be callable with the backend's options; anything else is named."""
    with pytest.raises(DriverLoadError, match="'plugin-value' names 42, which is not callable"):
        load_factory("plugin-value")


def test_loading_one_driver_imports_no_other(plugin_dist: Path) -> None:
    """load_factory imports only the entry point asked for, not its siblings."""
    sys.modules.pop("pw_plugin_lazy", None)
    assert load_factory("plugin-good").__name__ == "Driver"
    assert "pw_plugin_lazy" not in sys.modules
    assert load_factory("plugin-lazy").__name__ == "Driver"
    assert "pw_plugin_lazy" in sys.modules
