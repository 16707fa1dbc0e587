#!/usr/bin/env python3
"""Samba 4.22 features, with and without (issue 22): deferred close.

    python3 tools/bench_newserver.py [--iterations 1000] [--rounds 3] [--samba417]

Open, read 4 KiB and close the same file ``--iterations`` times on one
tree, with ``tree.deferred_close`` 5 s ("deferred": the handle kept after
close is reused, no CREATE or CLOSE) and 0 ("closed": CREATE + READ + CLOSE
each time).  Interleaved rounds on one private Samba 4.22 started from the
Debian 13 root (``--samba417``: the machine's Samba instead); the figure is
operations per second (median over the rounds) and the ratio.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import interleave, median, table  # noqa: E402

from smblayer import fs  # noqa: E402
from smblayer.testing.chroot import default_root, root_problem  # noqa: E402
from smblayer.testing.samba import SambaServer  # noqa: E402


def open_read_close(tree, name: str, iterations: int, deferred: float) -> float:
    tree.deferred_close = deferred
    tree.deferred_closes.close_all()
    t0 = time.perf_counter()
    for _ in range(iterations):
        with tree.open(name, "rb") as f:
            f.read(4096)
    rate = iterations / (time.perf_counter() - t0)
    tree.deferred_closes.close_all()
    return rate


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
                "deferred": lambda: open_read_close(tree, "bench.bin", args.iterations, 5.0),
                "closed": lambda: open_read_close(tree, "bench.bin", args.iterations, 0),
            })
    on, off = median(results["deferred"]), median(results["closed"])
    print(table([["deferred close", f"{on:.0f}"], ["closed at once", f"{off:.0f}"],
                 ["ratio", f"{on / off:.2f}x"]],
                [f"open + read 4 KiB + close x{args.iterations}", "ops/s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
