"""``python -m pieceworks.cli``: the same as the ``pieceworks`` command."""

import sys

from pieceworks.cli.main import main

sys.exit(main())
