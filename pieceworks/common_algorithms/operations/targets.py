"""Nothing is destroyed by surprise: what a restore or replication would replace.

`existing_size` finds out whether a volume exists on a backend without
changing anything: a driver's ``list_volumes()`` helper if it has one, and
stream-out's `open_read` (whose reader knows the size). `check_target`
refuses (`VolumeExists`) to go on when the target exists and replacing it
was not asked for, and `require_still_absent` asks again right before the
target is written; `new_volume_id` picks an id no volume has yet.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass
from typing import Final

from pieceworks.common_algorithms.backend import Backend
from pieceworks.protocols import IStreamOut, VolumeExists, VolumeNotFound, VolumeRef, validate_id

__all__ = ["Existing", "check_target", "existing_size", "new_volume_id", "require_still_absent"]

log = logging.getLogger(__name__)

_MAX_ID: Final = 128


@dataclass(frozen=True, slots=True)
class Existing:
    """What a backend says about a volume id: whether it exists, and its size in bytes.

    `exists` is None when the backend cannot tell (no ``list_volumes()``
    and no stream-out); `size` is None when it exists but its size is unknown.
    """

    exists: bool | None
    size: int | None = None


def existing_size(backend: Backend, volume_id: str) -> Existing:
    """Whether `volume_id` exists on `backend`, and its size; reads no data."""
    volume = VolumeRef(volume_id)
    lister = getattr(backend.driver, "list_volumes", None)
    if callable(lister):
        ids = {v.volume_id if isinstance(v, VolumeRef) else str(v) for v in lister()}
        if volume_id not in ids:
            return Existing(False)
    if backend.provides(IStreamOut):
        try:
            with closing(backend.use(IStreamOut).open_read(volume)) as reader:
                return Existing(True, reader.size)
        except VolumeNotFound:
            return Existing(False)
    return Existing(True) if callable(lister) else Existing(None)


def check_target(
    backend: Backend, volume_id: str, *, overwrite: bool, operation: str
) -> int | None:
    """Refuse to replace an existing volume unless `overwrite`; return its old size.

    Raise `VolumeExists` naming the volume, the backend and the size if the
    volume exists and `overwrite` is false. Return the size (bytes) of the
    volume that will be replaced, or None if there is none (or its size is
    unknown). A backend that cannot tell whether the volume exists is
    logged and trusted to create or replace it.
    """
    found = existing_size(backend, volume_id)
    if found.exists is None:
        log.warning(
            "backend '%s' cannot tell whether volume '%s' exists; %s goes on",
            backend.name,
            volume_id,
            operation,
        )
        return None
    if not found.exists:
        return None
    size = "unknown size" if found.size is None else f"{found.size} bytes"
    if not overwrite:
        raise VolumeExists(
            f"volume '{volume_id}' already exists on backend '{backend.name}' ({size});"
            f" {operation} does not replace it unless asked to (--overwrite), or name"
            " another volume"
        )
    log.info("%s replaces volume '%s' (%s)", operation, volume_id, size)
    return found.size


def require_still_absent(backend: Backend, volume_id: str, *, operation: str) -> None:
    """Raise `VolumeExists` if `volume_id`, found free by `check_target`, exists now.

    Called right before a restore or replication that was not asked to
    replace anything writes its target (every attempt of the strategy
    fallback, and a job resumed by another conductor). Between the check
    and the write the volume can be created by another run (two restores
    into one new name), or by this run's own earlier attempt that committed
    and was then interrupted. A driver's writer decides at `open_write`
    whether it replaces a volume (`IStreamIn`: "created if it does not
    exist"), so without this check the later run silently replaced the
    other's volume, both reporting success. The file driver's commit also
    refuses a volume that appears after `open_write` (a link, not a
    rename); this check covers the writers opened after it appeared. A
    backend that cannot tell whether the volume exists is trusted, as by
    `check_target`.
    """
    found = existing_size(backend, volume_id)
    if not found.exists:
        return
    size = "unknown size" if found.size is None else f"{found.size} bytes"
    raise VolumeExists(
        f"volume '{volume_id}' on backend '{backend.name}' ({size}) appeared after this"
        f" {operation} checked that it was free: another run created it, or an earlier"
        f" attempt of this {operation} that was interrupted after its commit; it was not"
        f" replaced. Check what it holds, or {operation} again with --overwrite"
    )


def new_volume_id(backend: Backend, base: str) -> str:
    """`base` (cut to fit an id), or ``<base>-2``, ``-3``... : the first id no volume has.

    A backend that cannot tell whether a volume exists gets `base`.
    """
    for n in range(1, 10_000):
        suffix = "" if n == 1 else f"-{n}"
        candidate = validate_id("volume id", base[: _MAX_ID - len(suffix)] + suffix)
        if existing_size(backend, candidate).exists is not True:
            return candidate
    raise VolumeExists(f"no free volume id like '{base}' on backend '{backend.name}'")
