"""Reverts that never stop the other reverts: failures are recorded, not raised.

TaskFlow stops reverting a flow at the first revert that raises: the
reverts after it (releasing the store lease, say) never run, and the engine
logs a traceback. Every pieceworks revert therefore runs its undo through
`guarded`: an error is logged, recorded on the task (`revert_errors`) and
swallowed, so the remaining reverts still run. `run_flow` collects the
records and attaches them to the error it raises (`cleanup_errors`), which
the command line adds to its one-line message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from taskflow import task

__all__ = ["cleanup_errors", "guarded"]

log = logging.getLogger(__name__)


def guarded(atom: task.Task, what: str, undo: Callable[[], None]) -> None:
    """Run `undo` (the revert of `atom`, described by `what`); record an error, never raise."""
    try:
        undo()
    except Exception as exc:
        text = f"{atom.name}: could not {what}: {type(exc).__name__}: {exc}"
        log.warning("revert failed, continuing with the others: %s", text)
        errors: list[str] = atom.__dict__.setdefault("revert_errors", [])
        errors.append(text)


def cleanup_errors(atoms: Iterable[task.Task]) -> list[str]:
    """The revert failures `guarded` recorded on `atoms`, in order."""
    return [e for atom in atoms for e in atom.__dict__.get("revert_errors", [])]
