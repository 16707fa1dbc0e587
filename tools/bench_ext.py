#!/usr/bin/env python3
"""Benchmark the extras on a private Samba (RPC helpers on):

* share listing: SMB round trips per NetrShareEnum after the bind (1), and
  listings per second (bind included and not);
* server-side copy (FSCTL_SRV_COPYCHUNK_WRITE) of a 64 MiB file against
  read + write through the client, interleaved rounds in the same run,
  the ratio printed.

    python tools/bench_ext.py [--size-mib 64] [--rounds 3] [--mode plain|signed|encrypted]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from smblayer import fs  # noqa: E402
from smblayer.rpc import open_srvsvc, share_enum  # noqa: E402
from smblayer.testing.samba import SambaServer  # noqa: E402


def through_client(tree, src: str, dst: str) -> None:
    with tree.open(src, "rb") as fsrc, tree.open(dst, "wb") as fdst:
        shutil.copyfileobj(fsrc, fdst, 1 << 20)


def run(size_mib: int, rounds: int, mode: str) -> dict:
    out = {}
    encrypt = mode == "encrypted"
    with SambaServer(extra_global={"rpc start on demand helpers": "yes"}) as srv:
        share = "encrypted" if encrypt else "share"
        kw = dict(port=srv.port, encrypt=encrypt, require_signing=mode == "signed")
        with fs.connect(srv.host, "IPC$", srv.username, srv.password, **kw) as ipc:
            with open_srvsvc(ipc) as pipe:
                share_enum(pipe, srv.host)                  # warm up
                n, start = 0, time.perf_counter()
                while time.perf_counter() - start < 1.0:
                    pipe.round_trips = 0
                    share_enum(pipe, srv.host)
                    n += 1
                out["listing_round_trips"] = pipe.round_trips
                out["listings_per_s_bound"] = n / (time.perf_counter() - start)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < 1.0:
                with open_srvsvc(ipc) as pipe:
                    share_enum(pipe, srv.host)
                n += 1
            out["listings_per_s_with_bind"] = n / (time.perf_counter() - start)
        with fs.connect(srv.host, share, srv.username, srv.password, **kw) as tree:
            with tree.open("bench.src", "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(size_mib):
                    f.write(block)
            server, client = [], []
            for _ in range(rounds):
                t = time.perf_counter()
                tree.copy("bench.src", "bench.server")
                server.append(time.perf_counter() - t)
                t = time.perf_counter()
                through_client(tree, "bench.src", "bench.client")
                client.append(time.perf_counter() - t)
            assert tree.stat("bench.server").st_size == size_mib << 20
            assert tree.read_bytes("bench.server") == tree.read_bytes("bench.client")
        out["copy_server_s"] = statistics.median(server)
        out["copy_client_s"] = statistics.median(client)
        out["copy_ratio"] = out["copy_client_s"] / out["copy_server_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", choices=("plain", "signed", "encrypted"), default="plain",
                    help="session protection (SMB 3.1.1)")
    args = ap.parse_args()
    r = run(args.size_mib, args.rounds, args.mode)
    print(f"[{args.mode}]")
    print(f"share listing: {r['listing_round_trips']} SMB round trip per NetrShareEnum after "
          f"the bind; {r['listings_per_s_bound']:.0f}/s bound, "
          f"{r['listings_per_s_with_bind']:.0f}/s with open+bind")
    print(f"{args.size_mib} MiB copy: server-side {r['copy_server_s'] * 1000:.0f} ms, "
          f"read+write through the client {r['copy_client_s'] * 1000:.0f} ms: "
          f"{r['copy_ratio']:.1f}x")


if __name__ == "__main__":
    main()
