"""``qemu-img`` for the qcow2 driver: run it, read ``info`` and ``map``, name images safely.

`Qemu` runs the tools as subprocesses with an argument list (never a
shell) and a timeout, turning their failures into protocol errors
(`BackendError` naming the command and its stderr, `TransientError` for a
timeout, `ConfigError` saying how to install a missing tool). Images are
handed to QEMU as ``json:`` specs of ``/dev/fd/N`` (`image_spec`): format
pinned, backing files off. See the package docstring for the design.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pieceworks.protocols import BackendError, ConfigError, Extent, TransientError
from pieceworks.protocols.os_errors import os_error_text

__all__ = [
    "INSTALL_HINT",
    "ImageInfo",
    "MapEntry",
    "Qemu",
    "data_extents",
    "find_tool",
    "image_spec",
    "nbd_spec",
]

INSTALL_HINT: Final = "run scripts/install-qemu-utils.sh (Debian package qemu-utils)"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    size: int
    snapshots: list[str]


@dataclass(frozen=True, slots=True)
class MapEntry:
    start: int
    length: int
    data: bool
    zero: bool

    @property
    def end(self) -> int:
        return self.start + self.length


class Qemu:
    """Runs ``qemu-img`` and ``qemu-nbd``; turns their failures into protocol errors."""

    __slots__ = ("nbd", "qemu_img", "timeout")

    def __init__(self, qemu_img: str, qemu_nbd: str, timeout: float) -> None:
        self.qemu_img, self.nbd, self.timeout = qemu_img, qemu_nbd, timeout

    def img(
        self,
        args: list[str],
        what: str,
        fds: Sequence[int] = (),
        timeout: float | None = None,
    ) -> str:
        """Run ``qemu-img <args>`` and return its stdout; `what` starts any error message."""
        command = [self.qemu_img, *args]
        limit = self.timeout if timeout is None else timeout
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=limit,
                pass_fds=tuple(fds),
                check=False,
            )
        except FileNotFoundError:
            raise ConfigError(f"{what}: {self.qemu_img} not found: {INSTALL_HINT}") from None
        except subprocess.TimeoutExpired:
            raise TransientError(
                f"{what}: qemu-img {args[0]} timed out after {limit:g} s"
            ) from None
        except OSError as exc:
            raise BackendError(f"{what}: cannot run qemu-img: {os_error_text(exc)}") from exc
        if done.returncode:
            detail = done.stderr.strip() or f"exit status {done.returncode}"
            for arg in args:  # name the image, not the /dev/fd spec it was handed as
                if arg.startswith("json:"):
                    detail = detail.replace(arg, "<image>")
            raise BackendError(f"{what}: qemu-img {args[0]} failed: {detail}")
        return done.stdout

    def info(self, fd: int, what: str) -> ImageInfo:
        """Size and snapshot names of the image open as `fd`; refuse non-standalone images."""
        out = self.img(["info", "--output=json", image_spec(fd)], what, fds=(fd,))
        try:
            info = json.loads(out)
            specific = info.get("format-specific", {}).get("data", {})
            size = int(info["virtual-size"])
            names = [str(s["name"]) for s in info.get("snapshots", ())]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackendError(f"{what}: unexpected qemu-img info output: {exc!r}") from exc
        for key, found in (
            ("backing file", info.get("backing-filename")),
            ("external data file", specific.get("data-file")),
        ):
            if found:
                raise BackendError(
                    f"{what}: the image has a {key} ({found!r}); the qcow2 driver handles"
                    " standalone images only"
                )
        return ImageInfo(size, names)

    def map(self, spec: str, what: str, fds: Sequence[int] = ()) -> list[MapEntry]:
        """``qemu-img map`` of an image spec, as entries covering its whole size."""
        out = self.img(["map", "--output=json", spec], what, fds=fds)
        try:
            return [
                MapEntry(int(e["start"]), int(e["length"]), bool(e["data"]), bool(e["zero"]))
                for e in json.loads(out)
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{what}: unexpected qemu-img map output: {exc!r}") from exc


def find_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"qcow2 driver: {name} not found on PATH: {INSTALL_HINT}")
    return found


def image_spec(fd: int, read_only: bool = True) -> str:
    """A ``json:`` image spec for the qcow2 image open as `fd`.

    The format is pinned (never probed), backing files are never opened,
    and a reader takes no image lock (``force-share``), so it neither blocks
    nor is blocked by a writer of the volume.
    """
    spec: dict[str, object] = {
        "driver": "qcow2",
        "backing": None,
        "file": {"driver": "file", "filename": f"/dev/fd/{fd}"},
    }
    if read_only:
        spec.update({"read-only": True, "force-share": True})
    return "json:" + json.dumps(spec, separators=(",", ":"))


def nbd_spec(socket_path: str, open_timeout: float) -> str:
    """A ``json:`` image spec for an NBD export; QEMU retries connecting for `open_timeout` s."""
    spec = {
        "driver": "nbd",
        "server": {"type": "unix", "path": socket_path},
        "open-timeout": max(1, round(open_timeout)),
    }
    return "json:" + json.dumps(spec, separators=(",", ":"))


def data_extents(entries: Sequence[MapEntry], size: int) -> list[Extent]:
    """Ranges that hold data and may be non-zero, merged, sorted, clipped to `size`."""
    extents: list[Extent] = []
    for e in sorted(entries, key=lambda e: e.start):
        start, end = e.start, min(e.end, size)
        if not e.data or e.zero or start >= end:
            continue
        if extents and extents[-1].end >= start:
            start = extents.pop().offset
        extents.append(Extent(start, end - start))
    return extents
