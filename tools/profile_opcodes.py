#!/usr/bin/env python3
"""Python bytecodes per request per stage: a deterministic cost table (issue 21).

    python3 tools/profile_opcodes.py [--tree NAME=PATH ...] [--requests 300]
                                     [--figures sync,threads16,async16,stat]

Theory of operation.  Timing a request on a shared, loaded 2-core machine
swings by 2x from one run to the next; the number of bytecodes the
interpreter executes for it does not.  For every tree and figure a child
process (``PYTHONPATH`` picks the tree) connects to one private Samba, warms
up, then runs the workload with a ``sys.settrace`` opcode tracer in every
thread (the demux and smbiod included: the tracer is installed before the
client starts them, and counts only while measuring).  Each function's
opcodes go to a stage by ``tools/profile_stages.py``'s rules (task creation,
credit gate, MID table, encode, send, wake-up, demux read, decode, future
settle, return...).  C calls (sendmsg, locks, struct) count as nothing
here: read the table with the CPU figures of ``tools/bench_percost.py``.
On CPython 3.11 one opcode of this code costs some 50 machine
instructions.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IN_FLIGHT = 16
THREADS = 16


class OpcodeCounter:
    """Opcodes per function, counted per thread (no lost increments)."""

    def __init__(self) -> None:
        self.on = False
        self._counters = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def _mine(self) -> collections.Counter:
        counter = getattr(self._local, "counter", None)
        if counter is None:
            counter = self._local.counter = collections.Counter()
            with self._lock:
                self._counters.append(counter)
        return counter

    def trace(self, frame, event, arg):
        frame.f_trace_opcodes = True
        if event == "opcode" and self.on:
            code = frame.f_code
            self._mine()[(code.co_filename, code.co_name)] += 1
        return self.trace

    def install(self) -> None:
        threading.settrace(self.trace)
        sys.settrace(self.trace)

    def total(self) -> collections.Counter:
        merged: collections.Counter = collections.Counter()
        with self._lock:
            for counter in self._counters:
                merged.update(counter)
        return merged


def child(args) -> None:
    counter = OpcodeCounter()
    counter.install()               # before the client starts its threads
    import smblayer
    from smblayer import fs
    from smblayer.config import Dialect, DialectRange
    only = DialectRange(Dialect.SMB3_1_1, Dialect.SMB3_1_1)
    client = smblayer.get_client(args.host, args.port, dialects=only)
    tree = fs.connect(args.host, args.share, args.user, os.environ["SMB_PASSWORD"],
                      port=args.port)
    n = args.requests

    def sync():
        for _ in range(n):
            client.echo()

    def async16():
        from concurrent.futures import FIRST_COMPLETED, wait
        pending = {client.echo_async() for _ in range(IN_FLIGHT)}
        done = 0
        while done < n - IN_FLIGHT:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                done += 1
                pending.add(client.echo_async())
        for future in pending:
            future.result()

    def threads16():
        def worker():
            for _ in range(n // THREADS):
                client.echo()
        pool = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    def stat():
        for _ in range(n):
            tree.stat(args.file)

    work = {"sync": sync, "async16": async16, "threads16": threads16, "stat": stat}
    counts = {}
    for figure in args.figures.split(","):
        work[figure]()                # warm up (first-use imports, caches)
        counter.total()               # (settles the per-thread counters)
        before = counter.total()
        counter.on = True
        work[figure]()
        counter.on = False
        after = counter.total()
        after.subtract(before)
        counts[figure] = {f"{path}\0{func}": c / n for (path, func), c in after.items() if c}
    sys.settrace(None)
    threading.settrace(None)
    tree.close()
    client.release()
    print(json.dumps(counts))


def stage_table(counts: dict) -> dict:
    sys.path.insert(0, HERE)
    from profile_stages import STAGES, classify_function
    table = dict.fromkeys(STAGES, 0.0)
    for key, n in counts.items():
        path, func = key.split("\0")
        stage = classify_function(path, func)
        table[stage] += n
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", help="NAME=PATH (default: this tree)")
    p.add_argument("--figures", default="sync,threads16,async16,stat")
    p.add_argument("--requests", type=int, default=320)
    p.add_argument("--leaves", type=int, default=0, help="print the N costliest functions")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for opt in ("--host", "--share", "--user", "--file"):
        p.add_argument(opt, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    sys.path.insert(0, HERE)
    from profile_stages import percost_samba
    trees = dict(t.split("=", 1) for t in args.tree) if args.tree else {"this": ROOT}
    results = {}
    with percost_samba() as samba:
        for name, path in trees.items():
            argv = [sys.executable, os.path.abspath(__file__), "--child", "--host", samba.host,
                    "--port", str(samba.port), "--share", "share", "--user", samba.username,
                    "--file", "percost.txt", "--figures", args.figures,
                    "--requests", str(args.requests)]
            env = dict(os.environ, PYTHONPATH=path, SMB_PASSWORD=samba.password)
            out = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=True)
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    figures = args.figures.split(",")
    cols = [(f, n) for f in figures for n in results]
    tables = {(f, n): stage_table(results[n][f]) for f, n in cols}
    print(f"{'opcodes per request':<22}" + "".join(f"{f + ' ' + n:>18}" for f, n in cols))
    for stage in next(iter(tables.values())):
        print(f"{stage:<22}" + "".join(f"{tables[c][stage]:>18.0f}" for c in cols))
    print(f"{'total':<22}" + "".join(f"{sum(tables[c].values()):>18.0f}" for c in cols))
    if args.leaves:
        for f, n in cols:
            print(f"\n{f} {n}: costliest functions (opcodes per request)")
            top = sorted(results[n][f].items(), key=lambda kv: -kv[1])[:args.leaves]
            for key, count in top:
                path, func = key.split("\0")
                print(f"  {count:7.1f}  {os.path.basename(path)}:{func}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
