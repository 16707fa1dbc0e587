"""The entry point (console script ``smblayer``, ``python -m smblayer``).

It parses the command line first, with nothing but :mod:`.fastparse` (the
common command lines) or :mod:`.args` (argparse: all the rest) loaded, so
``--version``, ``--help`` and usage errors answer without importing the SMB
layer; only then does :func:`smblayer.cli.run.run` load the command's code
and connect.
"""
from __future__ import annotations

from . import fastparse

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command line (``sys.argv[1:]`` by default); returns the exit
    status (argparse exits by itself for --help, --version and bad usage)."""
    import sys
    argv = sys.argv[1:] if argv is None else list(argv)
    args = fastparse.parse(argv)            # the common command lines, without argparse
    if args is None:
        from .args import parse
        args = parse(argv)
    from .run import run
    return run(args)
