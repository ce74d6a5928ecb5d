"""In-process checks of the CLI's small parts: masking, progress, sizes, parser wiring."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from pieceworks.cli.config import load_config
from pieceworks.cli.main import resolve
from pieceworks.cli.masking import Masker, is_secret_name
from pieceworks.cli.parser import CODECS, KINDS, build_parser, parse_size
from pieceworks.cli.progress import Progress, format_eta
from pieceworks.common_algorithms import ProgressEvent
from pieceworks.protocols import ConfigError
from pieceworks.protocols.chunks import CODECS as REAL_CODECS
from pieceworks.registry import Kind


def test_masker_hides_known_values_and_url_credentials() -> None:
    """Known secrets vanish anywhere, and so do passwords inside URLs."""
    masker = Masker(["s3cr3t-value", "ab"])  # too short to replace blindly
    text = masker.text("login with s3cr3t-value failed; url postgresql://user:dbpass@host/db ab")
    assert "s3cr3t-value" not in text and "dbpass" not in text
    assert "postgresql://user:***@host/db" in text and text.endswith(" ab")
    data = masker.data({"key": "s3cr3t-value", "nested": [{"path": "/s3cr3t-value/z"}]})
    assert data == {"key": "***", "nested": [{"path": "/***/z"}]}
    assert is_secret_name("secret_key") and is_secret_name("Password") and is_secret_name("key")
    assert not is_secret_name("path") and not is_secret_name("monkey")


def test_masker_masks_secrets_not_words() -> None:
    """Words that look secret are data: a change_token field, a volume named
    ``secret: abc``, ``password=...`` about something never configured."""
    masker = Masker(["s3cr3t-value"])
    for line in (
        "change_token: 1f2e3d4c",
        "unknown volume 'secret: abc' on backend 'lab'",
        "token = tok-123 key=value password=pw1 auth_token: x",
    ):
        assert masker.text(line) == line
    data = {"change_token": "1f2e3d4c", "volume_id": "secret: abc", "auth_token": "y"}
    assert masker.data(data) == data


def test_progress_lines_are_throttled_and_the_bar_has_rate_and_eta() -> None:
    """Plain lines: at most one per interval plus the last; the bar shows MB/s and ETA."""
    now = [0.0]
    lines = io.StringIO()
    plain = Progress("backup", lines, "lines", interval=1.0, clock=lambda: now[0])
    for i in range(11):
        now[0] = i * 0.25
        plain(ProgressEvent("t", i / 10, i * 10_000_000, 100_000_000))
    plain(ProgressEvent("t", 1.0, 100_000_000, 100_000_000))  # repeated final report
    plain(ProgressEvent("t", 0.0, 0, 0))  # TaskFlow's own start/end events carry no bytes
    printed = lines.getvalue().splitlines()
    assert len(printed) == 4  # t=0, 1.0, 2.0 and the final 100% at t=2.5
    assert printed[-1].startswith("pieceworks: backup: 100.0%")
    assert "40.0 MB/s" in printed[-1]

    bar = io.StringIO()
    with Progress("backup", bar, "bar", clock=lambda: now[0]) as p:
        now[0] = 10.0
        p(ProgressEvent("t", 0.1, 10_000_000, 100_000_000))
        now[0] = 11.0
        p(ProgressEvent("t", 0.5, 50_000_000, 100_000_000))
    drawn = bar.getvalue()
    assert drawn.count("\r") == 2 and drawn.endswith("\n")
    assert "40.0 MB/s" in drawn and "ETA 0:01" in drawn and "47.7 MiB / 95.4 MiB" in drawn
    assert format_eta(None) == "--:--" and format_eta(3725) == "1:02:05"


def test_sizes_parse_like_oslo_utils() -> None:
    """--chunk-size takes IEC units, mixed units and plain byte counts."""
    assert parse_size("4MiB") == parse_size("4 MiB") == parse_size("4M") == 4 * 1024 * 1024
    assert parse_size("65536") == 65536
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def test_the_light_parser_agrees_with_the_libraries_and_every_handler_exists() -> None:
    """The parser's codec and kind lists are the real ones; each handler imports."""
    assert tuple(REAL_CODECS) == CODECS
    assert set(KINDS) == {k.value for k in Kind}
    parser = build_parser()
    handlers: set[str] = set()

    def walk(p: argparse.ArgumentParser) -> None:
        if p.get_default("handler"):
            handlers.add(p.get_default("handler"))
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    walk(child)

    walk(parser)
    assert len(handlers) >= 14
    for handler in handlers:
        assert callable(resolve(handler)), handler


def test_config_sections_are_checked(tmp_path: Path) -> None:
    """Unknown sections and keys, missing drivers and nested values are refused by name."""
    cases = {
        "[backend.x]\ndriver='file'\n": "unknown section(s) backend",
        "[backends.x]\npath='/'\n": "[backends.x]: missing 'driver'",
        "[backends.x]\ndriver='file'\nsub={a=1}\n": "option 'sub' must be a string",
        "[engine]\nthreads=2\n": "[engine]: unknown key(s) threads",
        "[backends.'../x']\ndriver='file'\n": "invalid backend name",
    }
    for text, message in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=None) as err:
            load_config(str(path), {"HOME": str(tmp_path)})
        assert message in str(err.value), (text, str(err.value))
