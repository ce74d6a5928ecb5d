"""``python -m pieceworks.cli``: the same as the ``pieceworks`` command."""

from pieceworks.cli.process import run

run()
