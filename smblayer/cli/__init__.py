"""The ``smblayer`` command line (``python -m smblayer``).

    smblayer put [-r] [--continue] [--verify] LOCAL... //host[:port]/share/path
    smblayer get [-r] [--continue] [--verify] //host[:port]/share/path... [LOCAL]
    smblayer ls|cat|stat|mkdir|rmdir|du //host[:port]/share/path
    smblayer rm [-r] [-f] //host[:port]/share/path...
    smblayer mv [-f] //host/share/old //host/share/new    (or a bare new path)
    smblayer df //host[:port]/share
    smblayer echo //host[:port]
    smblayer bench //host[:port]/share [--size 64M] [--json]

URLs may also be written ``smb://host[:port]/share/path``; ``*`` and ``?``
select several remote files in get, ls and rm (local ones in put).  LOCAL
"-" is stdin / stdout.  get and put write to a temporary name and rename it
over the destination when complete.  Credentials come from ``-U
user[%pass]``, ``--password``, ``-A FILE``, ``-N``, ``-k`` or
``SMB_USER``/``SMB_PASSWORD`` (the password is asked for once on a terminal
when missing; it is never printed or logged).

Exit status: 0 success, 1 SMB or I/O error (one line on stderr:
``smblayer: <command>: <error>``), 2 usage error, 130 interrupted.

Layout (each module loads only when a run needs it):

    args.py         the argparse parser and its types; no SMB code
    main.py         main(): parse, then hand over to run.py
    run.py          connections, logging, Ctrl-C, the one-line error mapping
    connections.py  URLs, credentials, client options, Connections
    files.py        echo ls stat cat rm mkdir rmdir mv du df watch cp; wildcards
    transfers.py    get and put (on smblayer.fs.transfer)
    bench.py        the bench command and its measuring functions
    progress.py     the progress bar and status line

A new command: a ``cmd_NAME(args) -> int`` in a module here, and an
``add("NAME", "module:cmd_NAME", ...)`` in :func:`args.build_parser`.
"""
from __future__ import annotations

import importlib

from .main import main

# Names importable from smblayer.cli (tools/ and tests use them), loaded on
# first use so that ``import smblayer.cli`` stays as light as main() needs.
_LAZY = {
    "build_parser": "args", "parse_size": "args", "parse_dialect": "args",
    "UsageError": "args", "PROG": "args",
    "SmbUrl": "connections", "parse_url": "connections", "Credentials": "connections",
    "read_auth_file": "connections", "Connections": "connections",
    "describe_error": "run",
    "upload": "transfers", "download": "transfers", "VerifyError": "transfers",
    "bench_echo_latency": "bench", "bench_echo_threads": "bench",
    "bench_echo_async": "bench", "bench_bulk": "bench", "bench_small_files": "bench",
    "run_bench": "bench", "format_bench": "bench",
}

__all__ = ["main", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
