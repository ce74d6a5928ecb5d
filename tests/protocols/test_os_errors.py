"""`os_reason` and `os_error_text`: why a system call failed, in words, on real paths.

``str(OSError)`` (``[Errno 20] Not a directory: '/dev/null/x'``) reached users
in messages; these say the same without the number, and name the file in the
way (``/dev/null is not a directory``) or the missing directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from pieceworks.protocols.os_errors import os_cause, os_error_text, os_reason


def _error(call: object, *args: object) -> OSError:
    with pytest.raises(OSError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_a_directory_where_a_file_is_read(tmp_path: Path) -> None:
    exc = _error(open, tmp_path)
    assert os_reason(exc, tmp_path) == "Is a directory"
    assert os_error_text(exc) == f"Is a directory: {tmp_path}"
    assert "Errno" not in os_reason(exc) + os_error_text(exc)


def test_a_path_through_a_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    through = tmp_path / "afile" / "deeper" / "x"
    exc = _error(open, through)
    assert os_reason(exc, through) == f"{tmp_path / 'afile'} is not a directory"
    assert os_reason(exc) == "Not a directory"  # without the path: the plain reason


def test_a_relative_path_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("x")
    exc = _error(open, "afile/x")
    assert os_reason(exc, "afile/x") == "afile is not a directory"


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "pw"
    exc = _error(open, missing)
    assert os_reason(exc, missing) == f"directory {tmp_path / 'nowhere'} does not exist"
    present = tmp_path / "pw"  # its directory exists: the file is what is missing
    assert os_reason(_error(open, present), present) == "No such file or directory"


def test_a_symbolic_link_loop(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    assert os_reason(_error(open, loop), loop) == "Too many levels of symbolic links"


def test_an_error_without_strerror_gives_its_message() -> None:
    assert os_reason(OSError("the disk went away")) == "the disk went away"
    assert os_error_text(OSError()) == "OSError"
    renamed = OSError(18, "Invalid cross-device link", "/a", None, "/b")
    assert os_error_text(renamed) == "Invalid cross-device link: /a -> /b"


def test_the_socket_error_under_a_library_connection_error_is_found() -> None:
    """requests -> urllib3 -> socket: the bottom error is the one with the words."""
    with pytest.raises(requests.ConnectionError) as caught:
        requests.get("http://127.0.0.1:1/", timeout=5)
    assert "Errno" in str(caught.value)  # what the message used to carry
    cause = os_cause(caught.value)
    assert isinstance(cause, ConnectionRefusedError), repr(cause)
    assert cause.strerror == "Connection refused"
    assert os_cause(ValueError("no system error below")) is None
