"""Run journals on this host, for runs that create temporaries but write to no store.

    journal = LocalJournal.default()          # $PIECEWORKS_HOME/journal
    journal.record(token, "replicate-op", {"backend": "lab", "volume_id": "v",
                                            "snapshot_id": "pw-op-stream"})
    ... create the snapshot, use it, delete it ...
    journal.forget(token, entry)              # the file goes with its last entry

A run that takes a temporary snapshot names it in a journal before taking
it, so that ``pieceworks recover`` can delete it after the run was killed.
Runs with a store journal there (``runs/<token>``, `leases.record_temporary`:
visible from every host sharing the store); a run without a store (a
replication between two backends) journals here, and so does a restore to
a local file (entry ``{"file": path}``, its temporary file next to the
destination, named with `TEMP_FILE_MARK`): one JSON file per run,
``<directory>/<token>.json``, with the same fields as a store journal
(`Owner` fields, ``kind``, ``id``, ``started``, ``renewed``, ``temporary``).
Its owner is always on this host, so whether it lives is known at once.

Files are replaced atomically (a temporary ``.tmp-<token>-<pid>`` renamed
over the journal); `recover` removes the journal of a dead owner once every
temporary it names is gone, and temporary files of dead writers. Errors are
`OSError` (the directory cannot be written), raised before the temporary is
created.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pieceworks.protocols import validate_id
from pieceworks.protocols.owner import Liveness, Owner, process_start
from pieceworks.protocols.user_paths import expand_user

__all__ = ["TEMP_FILE_MARK", "JournalFile", "LocalJournal", "default_journal_dir"]

#: Part of the name of every temporary file a journal may name (``{"file": path}``);
#: `recover` removes no journaled file without it.
TEMP_FILE_MARK = ".pw-restore-"


def default_journal_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$PIECEWORKS_HOME/journal`` (default home ``~/.local/share/pieceworks``).

    The same home the command line uses (`pieceworks.cli.config.home_dir`).
    """
    env = os.environ if env is None else env
    home = env.get("PIECEWORKS_HOME")
    if home:
        return expand_user(home, "PIECEWORKS_HOME").absolute() / "journal"
    base = expand_user(env.get("HOME") or Path.home(), "HOME")
    return base / ".local" / "share" / "pieceworks" / "journal"


@dataclass(frozen=True, slots=True)
class JournalFile:
    """One run's journal as found: its `path`, `owner` (None: unreadable) and `temporary`."""

    path: Path
    owner: Owner | None
    temporary: tuple[dict[str, str], ...]

    @property
    def token(self) -> str:
        """The run token (the file's name)."""
        return self.path.name.removesuffix(".json")

    def state(self) -> tuple[bool, str]:
        """Whether its run is dead (the journal may be acted on), and why."""
        if self.owner is None:
            return True, "unreadable journal: no owner recorded"
        liveness = self.owner.liveness()
        if liveness is Liveness.DEAD:
            return True, f"owner died ({self.owner.describe()})"
        if liveness is Liveness.REMOTE:  # a copied home: not ours to judge
            return False, f"owner on another host ({self.owner.describe()})"
        return False, f"owner runs ({self.owner.describe()})"


class LocalJournal:
    """The run journals in one directory on this host (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"LocalJournal({str(self.directory)!r})"

    @classmethod
    def default(cls, env: Mapping[str, str] | None = None) -> LocalJournal:
        """The journal in `default_journal_dir`."""
        return cls(default_journal_dir(env))

    def path(self, token: str) -> Path:
        """The file of run `token` (`InvalidName` for a token that is no valid id)."""
        return self.directory / f"{validate_id('run token', token)}.json"

    def record(self, token: str, operation: str, entry: dict[str, str]) -> None:
        """Add `entry` to run `token`'s journal (made if missing); call before creating it."""
        body = self._read(self.path(token))
        items = list(body.get("temporary", [])) if isinstance(body, dict) else []
        if entry not in items:
            items.append(entry)
        started = body.get("started") if isinstance(body, dict) else None
        self._write(token, operation, started, items)

    def forget(self, token: str, entry: dict[str, str]) -> None:
        """Drop `entry` once deleted; the journal goes with its last entry."""
        path = self.path(token)
        body = self._read(path)
        if not isinstance(body, dict):
            return
        items = [e for e in body.get("temporary", []) if e != entry]
        if items:
            self._write(token, str(body.get("id", "")), body.get("started"), items)
        else:
            remove(path)

    def entries(self, token: str) -> list[dict[str, str]]:
        """What run `token` journaled and has not yet deleted."""
        body = self._read(self.path(token))
        items = body.get("temporary", []) if isinstance(body, dict) else []
        return [dict(e) for e in items if isinstance(e, dict)]

    def scan(self) -> Iterator[JournalFile]:
        """Every journal in the directory (none if it does not exist)."""
        try:
            names = sorted(os.listdir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = self.directory / name
            body = self._read(path)
            if body is None:
                continue  # removed meanwhile
            items = body.get("temporary", []) if isinstance(body, dict) else []
            yield JournalFile(
                path,
                Owner.from_dict(body),
                tuple(dict(e) for e in items if isinstance(e, dict)),
            )

    def stray_files(self) -> list[tuple[Path, bool, str]]:
        """Temporary files of interrupted writes: ``(path, left_behind, reason)``.

        A ``.tmp-<token>-<pid>`` file is left behind when its pid no longer
        runs (same host by construction).
        """
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.startswith(".tmp-"))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in names:
            pid = name.rpartition("-")[2]
            alive = pid.isdigit() and process_start(int(pid)) is not None
            found.append(
                (
                    self.directory / name,
                    not alive,
                    f"its writer (pid {pid}) {'runs' if alive else 'died'}",
                )
            )
        return found

    def _write(self, token: str, operation: str, started: Any, items: list[Any]) -> None:
        owner = Owner.current(token)
        body = {
            "kind": "run",
            "id": operation,
            **owner.to_dict(),
            "started": started if isinstance(started, int | float) else time.time(),
            "renewed": time.time(),
            "temporary": items,
        }
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.directory / f".tmp-{token}-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(body, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path(token))
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _read(path: Path) -> Any:
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            return {}


def remove(path: Path) -> None:
    """Remove `path`; one already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
