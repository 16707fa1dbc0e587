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
runs as usual for the command itself; at exit what is left is frozen too,
and the process ends without the interpreter's teardown (:func:`_exit_now`).
``main(argv)`` called from Python leaves the collector alone.
"""
from __future__ import annotations

import gc

from . import fastparse
from .words import PROG

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
    if argv == ["--version"]:               # argparse's answer, without argparse
        from .. import __version__
        print(f"{PROG} {__version__}")
        raise SystemExit(0)
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
        status = run(args)
    finally:
        gc.freeze()
    _exit_now(status)
    return status


def _exit_now(status: int) -> None:
    """End the program now with ``status``, as the interpreter's exit
    would: the atexit handlers run (logging's flush, the client registry's)
    and stdout and stderr are flushed, then the process ends without the
    interpreter's teardown (freeing every module, class and object one by
    one: ~3 % of a one-shot command's instructions).  Nothing is skipped
    that the command needs: it closed its connections and files.  Where
    that cannot be said -- a thread that is no daemon still runs, a flush
    fails -- this returns, and the interpreter exits the usual way."""
    import atexit
    import os
    import sys
    import threading
    me = threading.current_thread()
    if any(t is not me and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(status or 0)
