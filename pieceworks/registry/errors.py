"""Errors of the registry: building, composing and unregistering pieces.

Each subclasses the `protocols.errors` class that says what kind of problem
it is (`TypeError`-like for a wrong call, `NotFound` for a miss), so callers
catching the broad kind keep working.
"""

from __future__ import annotations

from pieceworks.protocols.errors import NotFound, PieceworksError

__all__ = [
    "BuildArgumentError",
    "CompositionConflict",
    "ForeignRegistration",
    "NotBuildable",
    "UnknownAttribute",
]


class BuildArgumentError(PieceworksError, TypeError):
    """`Registration.build` got an argument the piece does not accept, or missed one.

    The message names the registration and lists the accepted parameters;
    `registration` is its name, `accepted` the parameter names.
    """

    def __init__(self, message: str, registration: str, accepted: tuple[str, ...]) -> None:
        super().__init__(message)
        self.registration = registration
        self.accepted = accepted


class NotBuildable(PieceworksError, TypeError):
    """The registration holds something that builds no task or flow (a driver)."""


class CompositionConflict(PieceworksError, ValueError):
    """Two pieces of one composed flow use the same atom name or provide the same symbol.

    `pieces` names the two pieces, `names` the atom names or symbols they share.
    """

    def __init__(self, message: str, pieces: tuple[str, str], names: tuple[str, ...]) -> None:
        super().__init__(message)
        self.pieces = pieces
        self.names = names


class ForeignRegistration(PieceworksError, ValueError):
    """A registration was handed to a registry it does not belong to."""


class UnknownAttribute(NotFound):
    """A ``capability:NAME`` attribute names no published capability."""
