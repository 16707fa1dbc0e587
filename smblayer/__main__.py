"""``python -m smblayer``: the command line (see :mod:`smblayer.cli`)."""
import sys

from .cli import main

sys.exit(main())
