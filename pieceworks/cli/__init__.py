"""The ``pieceworks`` command: a thin layer over the common algorithms.

It reads the configuration (`config`), builds backends, stores and the
registry through entry-point discovery (`context`), runs an operation and
reports it as text or JSON (`output`) with progress on stderr (`progress`).
Every failure ends as one ``pieceworks: error: ...`` line and an exit code
from `exit_codes`.
"""
