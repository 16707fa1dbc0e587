"""The entry point (console script ``smblayer``, ``python -m smblayer``).

It parses the command line first, with nothing but :mod:`.fastparse` (the
common command lines) or :mod:`.args` (argparse: all the rest) loaded, so
``--version``, ``--help`` and usage errors answer without importing the SMB
layer; only then does :func:`smblayer.cli.run.run` load the command's code
and connect.

Run as the program (``main()`` without ``argv``), a command also spares the
garbage collector work that finds nothing: the start-up allocates tens of
thousands of objects that live until exit (modules, classes, functions)
and the collector's passes over them while they are made, and again at
interpreter exit, cost a one-shot ``stat`` about an eighth of its
instructions (callgrind: 275 M -> 242 M).  So collection is off while the
command's code loads; then those objects are frozen (``gc.freeze``: out of
the collector's sight, still freed by reference counting) and collection
runs as usual for the command itself; at exit what is left is frozen too.
``main(argv)`` called from Python leaves the collector alone.
"""
from __future__ import annotations

import gc

from . import fastparse

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command line (``sys.argv[1:]`` by default); returns the exit
    status (argparse exits by itself for --help, --version and bad usage)."""
    import sys
    program = argv is None
    if program:
        gc.disable()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = fastparse.parse(argv)            # the common command lines, without argparse
    if args is None:
        from .args import parse
        args = parse(argv)
    from .run import run
    if not program:
        return run(args)
    gc.freeze()
    gc.enable()
    try:
        return run(args)
    finally:
        gc.freeze()
