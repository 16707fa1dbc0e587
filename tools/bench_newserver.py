#!/usr/bin/env python3
"""Samba 4.22 features, with and without (issue 22).

    python3 tools/bench_newserver.py [--iterations 1000] [--rounds 3] [--samba417]

* deferred close: open, read 4 KiB and close the same file
  ``--iterations`` times on one tree, ``tree.deferred_close`` 5 s (the
  handle kept after close is reused: no CREATE or CLOSE; with the bytes
  kept under the read lease, ``tree.read_cache``, on and off) against 0; and
  open ("wb"), write 4 KiB, close the same way (the kept writer's handle
  is truncated instead of a CREATE; its write and write time go as one
  compound instead of the WRITE + CLOSE compound);
* directory lease: ``tree.stat`` of each of 200 files in one directory,
  repeated, with the directory cache (``dir_cache`` 16) against without (0);
* fsspec's exists -> info -> open of a file in a cached directory: the
  round trips they take (CREATEs counted by the client's statistics: a
  stat is one compound round trip, an open one).

Interleaved rounds on one private Samba 4.22 started from the Debian 13
root (``--samba417``: the machine's Samba instead); figures are operations
per second (median over the rounds) and ratios.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import interleave, median, table  # noqa: E402

from smblayer import fs  # noqa: E402
from smblayer.fs.readcache import READ_CACHE  # noqa: E402
from smblayer.testing.chroot import default_root, root_problem  # noqa: E402
from smblayer.testing.samba import SambaServer  # noqa: E402


def open_read_close(tree, name: str, iterations: int, deferred: float,
                    read_cache: int = 0) -> float:
    tree.deferred_close = deferred
    tree.read_cache = read_cache
    tree.deferred_closes.close_all()
    t0 = time.perf_counter()
    for _ in range(iterations):
        with tree.open(name, "rb") as f:
            f.read(4096)
    rate = iterations / (time.perf_counter() - t0)
    tree.deferred_closes.close_all()
    return rate


def open_write_close(tree, name: str, iterations: int, deferred: float) -> float:
    tree.deferred_close = deferred
    tree.deferred_closes.close_all()
    data = os.urandom(4096)
    t0 = time.perf_counter()
    for _ in range(iterations):
        with tree.open(name, "wb") as f:
            f.write(data)
    rate = iterations / (time.perf_counter() - t0)
    tree.deferred_closes.close_all()
    return rate


def stat_all(tree, base: str, names, repeat: int, cache: int) -> float:
    tree.dir_cache_size = cache
    tree.dir_cache.clear()
    tree.listdir(base)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for name in names:
            tree.stat(f"{base}/{name}")
    return repeat * len(names) / (time.perf_counter() - t0)


def fsspec_round_trips(samba, cache: int) -> int:
    from smblayer.fsspec import SMBFileSystem
    fsys = SMBFileSystem(host=samba.host, port=samba.port, username=samba.username,
                         password=samba.password, skip_instance_cache=True)
    try:
        tree = fsys._tree("share")
        tree.dir_cache_size = cache
        fsys.ls("share/stats", detail=False)
        # each exchange here (a stat compound, an open) is one CREATE
        count = lambda: tree.client.stats().get("CREATE", {}).get("ops", 0)  # noqa: E731
        before = count()
        fsys.exists("share/stats/f000")
        fsys.info("share/stats/f000")
        with fsys.open("share/stats/f000", "rb") as f:
            trips = count() - before
            f.read()
        return trips
    finally:
        fsys.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samba417", action="store_true", help="the machine's Samba, not 4.22")
    args = p.parse_args()
    root = None
    if not args.samba417:
        problem = root_problem()
        if problem:
            sys.exit(problem)
        root = default_root()
    with SambaServer(root=root) as samba:
        print(f"# private Samba {'4.22' if root else '(host)'} on 127.0.0.1:{samba.port}")
        with fs.connect(samba.host, "share", samba.username, samba.password,
                        port=samba.port) as tree:
            tree.write_bytes("bench.bin", os.urandom(4096))
            results = interleave(args.rounds, {
                "deferred": lambda: open_read_close(tree, "bench.bin", args.iterations, 5.0,
                                                    READ_CACHE),
                "deferred, no kept bytes": lambda: open_read_close(
                    tree, "bench.bin", args.iterations, 5.0),
                "closed": lambda: open_read_close(tree, "bench.bin", args.iterations, 0,
                                                  READ_CACHE),
            })
            writes = interleave(args.rounds, {
                "deferred": lambda: open_write_close(tree, "bench-w.bin", args.iterations, 5.0),
                "closed": lambda: open_write_close(tree, "bench-w.bin", args.iterations, 0),
            })
            tree.mkdir("stats")
            names = [f"f{i:03d}" for i in range(200)]
            for name in names:
                tree.write_bytes(f"stats/{name}", b"x")
            stats = interleave(args.rounds, {
                "dir lease": lambda: stat_all(tree, "stats", names, 5, 16),
                "no cache": lambda: stat_all(tree, "stats", names, 5, 0),
            })
            trips = {"dir lease": fsspec_round_trips(samba, 16),
                     "no cache": fsspec_round_trips(samba, 0)}
    on, off = median(results["deferred"]), median(results["closed"])
    bare = median(results["deferred, no kept bytes"])
    print(table([["deferred close", f"{on:.0f}"],
                 ["deferred close, read_cache 0", f"{bare:.0f}"],
                 ["closed at once", f"{off:.0f}"],
                 ["ratio", f"{on / off:.2f}x"], ["ratio, read_cache 0", f"{bare / off:.2f}x"]],
                [f"open + read 4 KiB + close x{args.iterations}", "ops/s"]))
    on, off = median(writes["deferred"]), median(writes["closed"])
    print(table([["deferred close", f"{on:.0f}"], ["closed at once", f"{off:.0f}"],
                 ["ratio", f"{on / off:.2f}x"]],
                [f"open (wb) + write 4 KiB + close x{args.iterations}", "ops/s"]))
    on, off = median(stats["dir lease"]), median(stats["no cache"])
    print(table([["directory lease", f"{on:.0f}"], ["no cache", f"{off:.0f}"],
                 ["ratio", f"{on / off:.1f}x"]], ["tree.stat of 200 files x5", "stats/s"]))
    print(table([[k, str(v)] for k, v in trips.items()],
                ["fsspec exists + info + open", "round trips"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
