#!/usr/bin/env python3
"""smblayer.aio on one private Samba, interleaved rounds, medians.

    python3 tools/bench_aio.py [--rounds 5] [--stats 1000] [--files 100]
                               [--server //h:p/share] [--json]

* stat: ``--stats`` stats of one file from one event loop with 64 in flight
  (``smblayer.aio``) vs the blocking API from 16 threads (``fs.Tree.stat``),
  both on one shared connection; the figure is stats per second.
* cat: ``await fs._cat(paths)`` of ``--files`` small files (1 KiB) through
  the async fsspec filesystem vs fsspec's smbprotocol-based ``smb://``
  (``fs.cat(paths)``).

For the stats, the process CPU and the context switches (every thread of
the process, /proc) per stat are printed too: on a busy machine the rates
swing with the scheduler, these much less.

Connections are made before the timing; each contender runs once per round
(rotating order); the ratio printed is the median of the per-round ratios
(each round's two runs are neighbours in time, which matters on a busy
machine).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import (add_server_args, interleave, median, server_from_args,  # noqa: E402
                       table)

import fsspec  # noqa: E402

from smblayer import aio  # noqa: E402
from smblayer import fs as smbfs  # noqa: E402


def _switches() -> int:
    """Context switches of every thread of this process so far."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except OSError:
            pass                                    # a thread that just ended
    return total


def _costed(costs: dict, name: str, n: int, run):
    """``run`` wrapped to also record (CPU us, context switches) per op."""
    def wrapped():
        c0, x0 = time.process_time(), _switches()
        value = run()
        costs.setdefault(name, []).append(((time.process_time() - c0) / n * 1e6,
                                           (_switches() - x0) / n))
        return value
    return wrapped


def bench_stats(srv, loop, args, path: str) -> dict:
    tree = smbfs.connect(srv.host, srv.share, srv.username, srv.password, port=srv.port)
    atree = loop.run_until_complete(aio.connect(srv.host, srv.share, srv.username,
                                                srv.password, port=srv.port))
    pool = concurrent.futures.ThreadPoolExecutor(16)

    def sync_run():
        t0 = time.perf_counter()
        per = args.stats // 16
        list(pool.map(lambda _: [tree.stat(path) for _ in range(per)], range(16)))
        return per * 16 / (time.perf_counter() - t0)

    async def stats_async():
        todo = iter(range(args.stats))

        async def worker():                          # 64 of them: 64 stats in flight
            for _ in todo:
                await atree.stat(path)
        await asyncio.gather(*(worker() for _ in range(64)))

    def async_run():
        t0 = time.perf_counter()
        loop.run_until_complete(stats_async())
        return args.stats / (time.perf_counter() - t0)

    try:
        sync_run(), async_run()                      # warm-up
        costs: dict = {}
        rates = interleave(args.rounds, {
            "aio (1 loop, 64 in flight)": _costed(costs, "aio", args.stats, async_run),
            "sync (16 threads)": _costed(costs, "sync", args.stats, sync_run)})
    finally:
        pool.shutdown()
        loop.run_until_complete(atree.close())
        tree.close()
    summary = _summary(rates, higher_is_better=True)
    summary["cost"] = {name: (median([c for c, _x in v]), median([x for _c, x in v]))
                       for name, v in costs.items()}
    return summary


def _summary(values: dict, higher_is_better: bool) -> dict:
    """Medians, and the median of the per-round ratios (ours over theirs)."""
    (ours, a), (theirs, b) = values.items()
    ratios = [x / y if higher_is_better else y / x for x, y in zip(a, b)]
    out = {k: median(v) for k, v in values.items()}
    out["ratio"] = median(ratios)
    return out


def bench_cat(srv, loop, args, directory: str) -> dict:
    from fsspec.implementations.smb import SMBFileSystem as FsspecSMB
    paths = [f"{srv.share}/{directory}/s{i:04d}" for i in range(args.files)]
    creds = {"username": srv.username, "password": srv.password}
    theirs = FsspecSMB(host=srv.host, port=srv.port, **creds)

    async def make():
        return fsspec.filesystem("smblayer", host=srv.host, port=srv.port,
                                 asynchronous=True, skip_instance_cache=True, **creds)
    ours = loop.run_until_complete(make())

    def run_ours():
        t0 = time.perf_counter()
        out = loop.run_until_complete(ours._cat(paths))
        elapsed = time.perf_counter() - t0
        assert len(out) == args.files and all(len(v) == 1024 for v in out.values())
        return elapsed

    def run_theirs():
        t0 = time.perf_counter()
        out = theirs.cat(["/" + p for p in paths])
        elapsed = time.perf_counter() - t0
        assert len(out) == args.files
        return elapsed

    try:
        run_ours(), run_theirs()                     # warm-up: connect
        times = interleave(args.rounds, {"smblayer async fsspec": run_ours,
                                         "smb:// (smbprotocol)": run_theirs})
    finally:
        loop.run_until_complete(ours.close())
    return _summary(times, higher_is_better=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_args(p)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--stats", type=int, default=1000)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--skip", choices=("stat", "cat"), action="append", default=[])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    try:
        fsspec.get_filesystem_class("smblayer")
    except ValueError:
        fsspec.register_implementation("smblayer", "smblayer.fsspec.SMBFileSystem")
    results: dict = {}
    loop = asyncio.new_event_loop()
    with server_from_args(args) as srv:
        base = f"bench-aio-{uuid.uuid4().hex[:8]}"
        with smbfs.connect(srv.host, srv.share, srv.username, srv.password,
                           port=srv.port) as tree:
            tree.makedirs(f"{base}/small", exist_ok=True)
            tree.write_bytes(f"{base}/one", b"x" * 100)
            for i in range(args.files):
                tree.write_bytes(f"{base}/small/s{i:04d}", os.urandom(1024))
        try:
            if "stat" not in args.skip:
                results["stat"] = bench_stats(srv, loop, args, f"{base}/one")
            if "cat" not in args.skip:
                results["cat"] = bench_cat(srv, loop, args, f"{base}/small")
        finally:
            with smbfs.connect(srv.host, srv.share, srv.username, srv.password,
                               port=srv.port) as tree:
                tree.rmtree(base, ignore_errors=True)
            loop.close()
    rows = []
    if "stat" in results:
        r = results["stat"]
        a, s = r["aio (1 loop, 64 in flight)"], r["sync (16 threads)"]
        rows.append([f"{args.stats} stats", f"{a:.0f}/s", f"{s:.0f}/s", f"{r['ratio']:.2f}x"])
        (ac, ax), (sc, sx) = r["cost"]["aio"], r["cost"]["sync"]
        rows.append(["  CPU per stat", f"{ac:.0f} us", f"{sc:.0f} us", f"{ac / sc:.2f}x"])
        rows.append(["  switches per stat", f"{ax:.2f}", f"{sx:.2f}", ""])
    if "cat" in results:
        r = results["cat"]
        a, s = r["smblayer async fsspec"], r["smb:// (smbprotocol)"]
        rows.append([f"cat of {args.files} x 1 KiB", f"{a * 1000:.1f} ms", f"{s * 1000:.1f} ms",
                     f"{r['ratio']:.1f}x"])
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(rows, ["", "smblayer.aio", "baseline (sync 16 threads | smbprotocol)",
                           "ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
