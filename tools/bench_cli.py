#!/usr/bin/env python3
"""One-shot command cost: the ``smblayer`` command line vs Samba's C
``smbclient``, each run as a whole process (start-up, imports, connect,
the work, exit), as a user at a shell sees it.

    python3 tools/bench_cli.py [--rounds 7] [--server //h:p/share] [--json]

Cases (issue 20's loopback one-shot targets): ``--version``, ``--help``,
``ls`` of one file, ``stat`` (smbclient: ``allinfo``), ``get`` and ``put``
of a 4 KiB file; and the interpreter alone (``python -c pass``) against
``python -c "import smblayer"`` (the import target: at most 25 ms above).
Every case runs both contenders once per round, in rotating order, so
machine noise hits both alike; the figures are medians and their ratio.

smblayer runs as a user who did ``pip install smblayer`` has it: a
scratch venv made for the run holds a plain copy of this checkout's
``smblayer`` package in its site-packages, compiled like pip compiles it,
and the console script pip writes; the dependencies (cryptography,
pyspnego) come from this Python's site-packages through a path line.  A
development venv's editable install (``pip install -e``) is not measured:
it adds an import hook at site time (importlib.util, pathlib, fnmatch,
urllib.parse, ipaddress...) that costs every start a few milliseconds a
user never pays.  ``--as-is`` runs the console script next to this Python
instead (whatever install that is).  Credentials go in $SMB_USER /
$SMB_PASSWORD; smbclient gets an authentication file (``-A``).  Every contender runs once before the
rounds, with bytecode writing allowed (the .pyc files an installed package
has), whatever $PYTHONDONTWRITEBYTECODE says.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from typing import Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import (add_server_args, interleave, median, server_from_args,  # noqa: E402
                       table, time_process)


def smblayer_argv() -> list:
    """The console script beside this interpreter, else ``python -m smblayer``."""
    script = os.path.join(os.path.dirname(sys.executable), "smblayer")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "smblayer"]


# What pip writes as the console script of ``smblayer = smblayer.cli:main``.
CONSOLE_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from smblayer.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def install(where: str) -> Tuple[str, str]:
    """A regular (non-editable) install of this checkout in a scratch venv
    under ``where`` (see the module's doc): (its python, its console script)."""
    venv = os.path.join(where, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True,
                             text=True).stdout.strip()
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    shutil.copytree(os.path.join(repo, "smblayer"), os.path.join(purelib, "smblayer"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(purelib, "bench_cli_deps.pth"), "w") as f:
        f.write("\n".join(p for p in site.getsitepackages() if os.path.isdir(p)) + "\n")
    subprocess.run([python, "-m", "compileall", "-q", os.path.join(purelib, "smblayer")],
                   check=True)
    script = os.path.join(venv, "bin", "smblayer")
    with open(script, "w") as f:
        f.write(CONSOLE_SCRIPT.format(python=python))
    os.chmod(script, 0o755)
    return python, script


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_args(p)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--only", action="append", metavar="CASE",
                   help="run only this case (repeatable): import version help ls stat get put")
    p.add_argument("--baseline", metavar="DIR",
                   help="also run the smblayer package in DIR (e.g. an older checkout, "
                        "as python -m smblayer with PYTHONPATH=DIR): a before/after run")
    p.add_argument("--as-is", action="store_true",
                   help="run the smblayer script beside this Python (e.g. an editable "
                        "install) instead of a regular install made for the run")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    with server_from_args(args) as srv, tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SMB_USER=srv.username, SMB_PASSWORD=srv.password)
        # As installed (pip compiles the bytecode): the first runs write the
        # .pyc files that every later run reads.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if args.as_is:
            python, smbl = sys.executable, smblayer_argv()
        else:
            python, script = install(tmp)
            smbl = [script]
        smbc = srv.smbclient_argv()
        smbc_exe = smbc[0]
        url = srv.url
        name = f"bench-cli-{os.getpid()}"
        local = os.path.join(tmp, "4k.bin")
        with open(local, "wb") as f:
            f.write(os.urandom(4096))
        # the remote file every read case uses
        time_process([*smbl, "put", local, f"{url}/{name}.txt"], env=env)

        def run(argv, environ=env):
            return lambda: time_process(argv, env=environ, cwd=tmp)

        base_env = dict(env, PYTHONPATH=os.path.abspath(args.baseline)) if args.baseline else {}
        base = [python, "-m", "smblayer"]

        cases = {
            "import": {"python -c pass": run([python, "-c", "pass"]),
                       "python -c 'import smblayer'":
                           run([python, "-c", "import smblayer"])},
            "version": {"smblayer": run([*smbl, "--version"]),
                        "smbclient": run([smbc_exe, "--version"])},
            "help": {"smblayer": run([*smbl, "--help"]),
                     "smbclient": run([smbc_exe, "--help"])},
            "ls": {"smblayer": run([*smbl, "ls", f"{url}/{name}.txt"]),
                   "smbclient": run([*smbc, "-c", f"ls {name}.txt"])},
            "stat": {"smblayer": run([*smbl, "stat", f"{url}/{name}.txt"]),
                     "smbclient": run([*smbc, "-c", f"allinfo {name}.txt"])},
            "get": {"smblayer": run([*smbl, "get", f"{url}/{name}.txt",
                                     os.path.join(tmp, "got-a")]),
                    "smbclient": run([*smbc, "-c",
                                      f"get {name}.txt {os.path.join(tmp, 'got-b')}"])},
            "put": {"smblayer": run([*smbl, "put", local, f"{url}/{name}-a.txt"]),
                    "smbclient": run([*smbc, "-c", f"put {local} {name}-b.txt"])},
        }
        if args.baseline:
            cases["import"]["baseline: import smblayer"] = run(
                [python, "-c", "import smblayer"], base_env)
            for case, argv in (("version", ["--version"]), ("help", ["--help"]),
                               ("ls", ["ls", f"{url}/{name}.txt"]),
                               ("stat", ["stat", f"{url}/{name}.txt"]),
                               ("get", ["get", f"{url}/{name}.txt", os.path.join(tmp, "got-c")]),
                               ("put", ["put", local, f"{url}/{name}-c.txt"])):
                cases[case]["baseline"] = run([*base, *argv], base_env)
        wanted = args.only or list(cases)
        for case in wanted:             # warm-up: bytecode written, page cache filled
            for contender in cases[case].values():
                contender()
        results = {}
        try:
            for case in wanted:
                print(f"# {case}", file=sys.stderr, flush=True)
                results[case] = interleave(args.rounds, cases[case])
        finally:
            for suffix in (".txt", "-a.txt", "-b.txt", "-c.txt"):
                with_smbclient = [*smbc, "-c", f"del {name}{suffix}"]
                time_process(with_smbclient, env=env, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {}
    rows = []
    for case, times in results.items():
        med = {who: median(t) * 1e3 for who, t in times.items()}
        if case == "import":
            bare = med.pop("python -c pass")
            summary[case] = {"bare_ms": bare, **{f"{k}_ms": v for k, v in med.items()}}
            for who, ms in med.items():
                rows.append((f"{case}: {who}", f"{ms:.1f} ms", f"{bare:.1f} ms (python -c pass)",
                             f"+{ms - bare:.1f} ms"))
            continue
        ref = med["smbclient"]
        summary[case] = {f"{who}_ms": ms for who, ms in med.items()}
        for who, ms in med.items():
            if who != "smbclient":
                summary[case][f"{who}_ratio"] = ms / ref
                rows.append((f"{case}: {who}", f"{ms:.1f} ms", f"{ref:.1f} ms", f"{ms / ref:.2f}x"))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"# medians of {args.rounds} interleaved rounds, whole processes")
        print(table(rows, ("case", "smblayer", "reference", "ratio")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
