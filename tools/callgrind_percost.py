#!/usr/bin/env python3
"""Machine instructions per request (callgrind), load-independent (issue 21).

    python3 tools/callgrind_percost.py [--tree NAME=PATH ...] [--requests 400]
                                       [--figures sync,async16,stat,threads16]

For every tree and figure a child process (``PYTHONPATH`` picks the tree)
runs under ``valgrind --tool=callgrind`` against one private Samba (started
here, outside valgrind): it connects, warms up, then runs the workload
``n`` times.  Every figure is run with ``n`` and ``2n`` requests; the
difference of the two totals divided by ``n`` is the cost of one request
(start-up, connect and warm-up cancel out; what they allocated is
frozen out of the garbage collector's full passes).  Every thread of the child
counts (the demux and smbiod included); Samba does not.  Valgrind runs one
thread at a time, so the threaded figure is a cost, not a rate.
"""
from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IN_FLIGHT = 16
THREADS = 16


def child(args) -> None:
    import smblayer
    from smblayer import fs
    from smblayer.config import Dialect, DialectRange
    only = DialectRange(Dialect.SMB3_1_1, Dialect.SMB3_1_1)
    client = smblayer.get_client(args.host, args.port, dialects=only)
    tree = fs.connect(args.host, "share", args.user, os.environ["SMB_PASSWORD"],
                      port=args.port)
    n, figure = args.n, args.figure

    def sync(count):
        echo = client.echo
        for _ in range(count):
            echo()

    def async16(count):
        from concurrent.futures import FIRST_COMPLETED, wait
        pending = {client.echo_async() for _ in range(min(IN_FLIGHT, count))}
        started = len(pending)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                fut.result()
                if started < count:
                    pending.add(client.echo_async())
                    started += 1

    def stat(count):
        for _ in range(count):
            tree.stat(args.file)

    def threads16(count):
        import threading
        each = count // THREADS
        pool = [threading.Thread(target=sync, args=(each,)) for _ in range(THREADS)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    work = {"sync": sync, "async16": async16, "stat": stat, "threads16": threads16}[figure]
    work(100)                                  # warm up
    # A full collection of everything start-up made comes at a moment that
    # depends on the allocations so far: ~20 M instructions, once in one run
    # and not in the other.  Frozen, those objects are never scanned again.
    gc.collect()
    gc.freeze()
    work(n)
    tree.close()
    client.release()


def measure(python: str, tree: str, figure: str, n: int, samba, file: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                python, os.path.abspath(__file__), "--child", "--figure", figure,
                "--n", str(n), "--host", samba.host, "--port", str(samba.port),
                "--user", samba.username, "--file", file]
        env = dict(os.environ, PYTHONPATH=tree, SMB_PASSWORD=samba.password)
        proc = subprocess.run(argv, env=env, stderr=subprocess.PIPE, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        m = re.search(r"Collected : (\d+)", proc.stderr)
        return int(m.group(1))


def parent(args) -> int:
    sys.path.insert(0, ROOT)
    from smblayer.testing.samba import SambaServer
    trees = dict(t.split("=", 1) for t in args.tree) if args.tree else {}
    trees.setdefault("this", ROOT)
    figures = args.figures.split(",")
    n = args.requests
    results = {}
    with SambaServer() as samba:
        from smblayer import fs
        with fs.connect(samba.host, "share", samba.username, samba.password,
                        port=samba.port) as tree:
            with tree.open("percost.txt", "wb") as f:
                f.write(b"x" * 100)
        for figure in figures:
            for name, path in trees.items():
                one = measure(sys.executable, path, figure, n, samba, "percost.txt")
                two = measure(sys.executable, path, figure, 2 * n, samba, "percost.txt")
                results[(name, figure)] = (two - one) / n
                print(f"# {name} {figure}: {results[(name, figure)] / 1000:.1f}k",
                      file=sys.stderr, flush=True)
    print("instructions per request (callgrind, all threads of the client)")
    print(f"{'figure':<12}" + "".join(f"{name:>14}" for name in trees))
    for figure in figures:
        print(f"{figure:<12}" + "".join(f"{results[(name, figure)] / 1000:>13.1f}k"
                                        for name in trees))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", help="NAME=PATH of another source tree")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--figures", default="sync,async16,stat")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for opt in ("--figure", "--host", "--user", "--file"):
        p.add_argument(opt, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
