"""Fuzzing configuration loading (hypothesis): a Config, or one `ConfigError` saying what.

Two generators, each bounded: arbitrary text (TOML or not: bad syntax,
NUL bytes, nesting 100,000 deep, invalid UTF-8) written as the file, and
well-formed TOML documents of arbitrary tables, keys and values (names
that are no ids, drivers that are no strings, options that are tables or
arrays, NaN and infinities, unknown sections and engine keys). Loading
must never raise anything but `ConfigError`; choosing the backend and
store of what loaded raises only `ConfigError` or `NotFound` too.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pieceworks.cli.config import Config, load_config
from pieceworks.protocols import ConfigError, NotFound

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

names = st.sampled_from(
    ["local", "lab", "a", "", " ", "../x", "driver", "é", "a.b", "1"]
) | st.text(max_size=6)
scalars = (
    st.text(max_size=10)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
sections = st.dictionaries(
    names,
    st.dictionaries(names | st.just("driver"), values, max_size=4) | values,
    max_size=3,
)
documents = st.dictionaries(
    st.sampled_from(["backends", "stores", "engine", "extra"]),
    sections | values,
    max_size=4,
) | st.fixed_dictionaries(
    {},
    optional={
        "engine": st.dictionaries(
            st.sampled_from(["persistence", "engine", "other"]), values, max_size=3
        )
    },
)


def _toml_key(key: str) -> str:
    return json.dumps(key)  # a TOML basic string is a JSON string (escapes included)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(document: dict[str, object]) -> str:
    return "\n".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in document.items()) + "\n"


def _load(text: bytes) -> Config | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pieceworks.toml"
        path.write_bytes(text)
        env = {"HOME": tmp, "PIECEWORKS_HOME": str(Path(tmp) / "home")}
        try:
            config = load_config(str(path), env)
        except ConfigError as exc:
            assert str(exc) and str(path) in str(exc), "the message names the file"
            return None
        for choose in (config.backend, config.store):
            with contextlib.suppress(ConfigError, NotFound):
                choose(None)
        return config


@FUZZ
@given(st.text(max_size=400))
@example("[backends.x]\ndriver = ")
@example("a = " + "[" * 100_000 + "]" * 100_000)
@example("a = {b = " * 1000 + "1" + "}" * 1000)
@example("[engine]\nengine = [1, 2]\n")
@example("[engine]\nengine = {a = 1}\n")
@example("\x00")
def test_arbitrary_text(text: str) -> None:
    """Any text as the file: a Config or a ConfigError naming the file."""
    _load(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    """Invalid UTF-8 included."""
    _load(data)


@FUZZ
@given(documents)
def test_well_formed_documents_of_any_shape(document: dict[str, object]) -> None:
    """Valid TOML whose tables and values have any shape: a Config or a ConfigError."""
    config = _load(_toml(document).encode())
    if config is not None:
        for section in [*config.backends.values(), *config.stores.values()]:
            assert isinstance(section.driver, str) and section.driver
            assert all(isinstance(v, str | int | float | bool) for v in section.options.values())
