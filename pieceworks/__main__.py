"""``python -m pieceworks``: the same as the ``pieceworks`` command."""

from pieceworks.cli.process import run

run()
