"""`expand_user`: ``~`` and ``~user`` expanded as `Path.expanduser` does, an unknown
user refused as a `ConfigError` naming where the path came from (not a RuntimeError)."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from pieceworks.protocols import ConfigError
from pieceworks.protocols.user_paths import expand_user


def test_a_known_users_home_and_plain_paths_are_expanded_as_python_does() -> None:
    me = pwd.getpwuid(0).pw_name
    assert expand_user(f"~{me}/x", "--config") == Path(f"~{me}/x").expanduser()
    assert expand_user("rel/x", "--config") == Path("rel/x")
    assert expand_user(Path("/abs/~x"), "--config") == Path("/abs/~x")


@pytest.mark.parametrize("value", ["~no-such-user-pw", "~no-such-user-pw/a/b"])
def test_an_unknown_user_is_named_with_the_path_and_its_origin(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        expand_user(value, "PIECEWORKS_HOME")
    assert str(raised.value) == (
        f"PIECEWORKS_HOME {value}: cannot expand '~no-such-user-pw':"
        " there is no user 'no-such-user-pw' on this host"
    )
