"""The one loader from spec to object (`pieceworks.common_algorithms.opening`).

Every configuration error starts with the spec's origin and never shows an
option's value; the same loader serves the command line's sections and a
conductor's resolved job names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pieceworks.common_algorithms.keys import init_keys
from pieceworks.common_algorithms.opening import (
    DriverSpec,
    job_spec,
    load_driver,
    open_backend,
    open_objects,
    open_store,
)
from pieceworks.drivers.posix_store import PosixStore
from pieceworks.drivers.store_opener import STORES_GROUP
from pieceworks.protocols import BackendError, ConfigError
from pieceworks.protocols.encrypted_store import EncryptedStore
from pieceworks.registry.discovery import STORES_NAMESPACE

ORIGIN = "/etc/pw.toml [stores.lab]"
SECRET = "s3cr3t-Value-77"


def store_spec(tmp_path: Path) -> DriverSpec:
    return DriverSpec("store", "lab", "posix", {"path": str(tmp_path)}, ORIGIN)


def test_a_backend_and_a_store_open_with_their_specs(tmp_path: Path) -> None:
    backend = open_backend(
        DriverSpec("backend", "lab", "file", {"path": str(tmp_path)}, "[backends.lab]")
    )
    assert backend.name == "lab" and backend.spec is not None
    assert dict(backend.spec.options) == {"path": str(tmp_path)}
    store = open_store(store_spec(tmp_path))
    assert store.name == "lab" and not store.encrypted
    assert store.spec is not None and store.spec.driver == "posix"


@pytest.mark.parametrize(
    ("spec_change", "expected"),
    [
        ({"driver": "no-such-driver"}, "unknown store driver 'no-such-driver'"),
        ({"options": {"path": 5}}, "option 'path' must be a string, not an integer"),
        ({"options": {"path": "/tmp", "api_secret": SECRET}}, "api_secret"),
    ],
)
def test_configuration_errors_name_the_origin_never_a_value(
    tmp_path: Path, spec_change: dict[str, object], expected: str
) -> None:
    base = store_spec(tmp_path)
    spec = DriverSpec(
        "store",
        "lab",
        str(spec_change.get("driver", base.driver)),
        spec_change.get("options", base.options),  # type: ignore[arg-type]
        ORIGIN,
    )
    with pytest.raises(ConfigError) as raised:
        open_store(spec)
    assert str(raised.value).startswith(f"{ORIGIN}: ")
    assert expected in str(raised.value)
    assert SECRET not in str(raised.value)


def test_a_store_that_fails_itself_is_a_backend_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises((BackendError, ConfigError)) as raised:
        load_driver(store_spec(tmp_path / "file" / "below"))
    assert str(raised.value).startswith(f"{ORIGIN}: ")


def test_an_encrypted_store_needs_its_passphrase_file(tmp_path: Path) -> None:
    """Without one: a ConfigError naming origin and password_file; with it: sealed objects."""
    init_keys(PosixStore(tmp_path), "a-long-passphrase-1")
    with pytest.raises(ConfigError, match="is encrypted and this host's configuration") as raised:
        open_store(store_spec(tmp_path))
    assert str(raised.value).startswith(ORIGIN) and "password_file" in str(raised.value)
    pass_file = tmp_path.parent / "lab.pass"
    pass_file.write_text("a-long-passphrase-1\n")
    spec = DriverSpec("store", "lab", "posix", {"path": str(tmp_path)}, ORIGIN, (), str(pass_file))
    store = open_store(spec)
    assert store.encrypted and isinstance(store.objects, EncryptedStore)
    assert open_store(store_spec(tmp_path), lambda: "a-long-passphrase-1").encrypted
    assert not isinstance(open_objects(spec), EncryptedStore)  # as stored


def test_job_names_resolve_to_specs_with_the_hosts_origin(tmp_path: Path) -> None:
    def resolve(kind: str, name: str) -> dict[str, object]:
        if name != "lab":
            raise ConfigError(f"unknown {kind} '{name}'")
        return {"name": name, "driver": "posix", "options": {"path": 7}, "origin": ORIGIN}

    with pytest.raises(ConfigError, match=r"^/etc/pw.toml \[stores.lab\]: option 'path'"):
        open_store(job_spec("store", "lab", resolve))
    with pytest.raises(ConfigError, match="only a conductor that has it"):
        job_spec("store", "lab", None)
    with pytest.raises(ConfigError, match="unknown store 'elsewhere'"):
        job_spec("store", "elsewhere", resolve)
    legacy = job_spec("store", {"name": "old", "driver": "posix", "options": {}}, None)
    assert legacy.origin == "the job's store description" and legacy.name == "old"


def test_one_constant_names_the_stores_entry_point_group() -> None:
    assert STORES_GROUP == STORES_NAMESPACE == "pieceworks.stores"


def test_a_factory_without_catch_all_options_gets_unknown_ones_named() -> None:
    """A third-party driver whose factory takes named options only: an unknown option is
    named with the ones it takes, before Python's 'got an unexpected keyword argument'."""
    from pieceworks.common_algorithms.opening import DriverSpec, check_options  # noqa: PLC0415

    def factory(path: str, depth: int = 1) -> object:
        return object()

    spec = DriverSpec(
        "backend", "b", "mine", {"path": "/x", "colour": "blue"}, "c.toml [backends.b]"
    )
    with pytest.raises(ConfigError) as err:
        check_options(spec, factory)
    assert str(err.value) == (
        "c.toml [backends.b]: unknown option 'colour' for driver 'mine' (it takes: path, depth)"
    )
    lacking = DriverSpec("backend", "b", "mine", {"depth": 2}, "c.toml [backends.b]")
    with pytest.raises(ConfigError, match=r"driver 'mine' needs option 'path' \(given: depth\)"):
        check_options(lacking, factory)
    check_options(DriverSpec("backend", "b", "mine", {"path": "/x"}, "o"), factory)
