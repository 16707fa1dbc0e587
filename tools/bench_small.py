#!/usr/bin/env python3
"""Small files: create + 4 KiB write + close, smblayer vs smbprotocol.

    python3 tools/bench_small.py [--files 300] [--rounds 3] [--server //h:p/share]

Contenders, interleaved round after round on the same (private) Samba:

* tree.open: ``with tree.open(name, "wb") as f: f.write(data)`` (durable
  handle with a lease, write-behind: what a plain open does);
* tree.open durable=False: the same without a durable handle or lease;
* write_bytes: ``tree.write_bytes(name, data)`` (one compound round trip);
* smbprotocol: ``smbclient.open_file(unc, "wb")`` + write + close (its
  high-level API, session registered beforehand; it signs).

Figures are files per second (median over the rounds).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import add_server_args, interleave, median, server_from_args, shm_dir, table  # noqa: E402

from smblayer import fs  # noqa: E402

import time  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_args(p)
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if not args.server:
        tempfile.tempdir = shm_dir()
    data = os.urandom(args.size)

    with server_from_args(args) as srv:
        tree = fs.connect(srv.host, srv.share, srv.username, srv.password, port=srv.port)

        def smblayer_contender(label: str, write):
            def run() -> float:
                names = [f"small-{uuid.uuid4().hex[:8]}-{i}" for i in range(args.files)]
                t0 = time.perf_counter()
                for name in names:
                    write(name)
                elapsed = time.perf_counter() - t0
                for name in names:
                    tree.remove(name)
                return args.files / elapsed
            return label, run

        def durable(name):
            with tree.open(name, "wb") as f:
                f.write(data)

        def plain(name):
            with tree.open(name, "wb", durable=False) as f:
                f.write(data)

        contenders = dict([
            smblayer_contender("tree.open", durable),
            smblayer_contender("tree.open durable=False", plain),
            smblayer_contender("write_bytes", lambda name: tree.write_bytes(name, data)),
        ])
        try:
            import smbclient as spc
            from smbclient import open_file
            cache: dict = {}
            spc.register_session(srv.host, srv.username, srv.password, port=srv.port,
                                 connection_cache=cache)

            def smbprotocol_run() -> float:
                base = rf"\\{srv.host}\{srv.share}\small-sp-{uuid.uuid4().hex[:8]}"
                names = [f"{base}-{i}" for i in range(args.files)]
                kw = dict(port=srv.port, connection_cache=cache)
                t0 = time.perf_counter()
                for name in names:
                    with open_file(name, "wb", **kw) as f:
                        f.write(data)
                elapsed = time.perf_counter() - t0
                for name in names:
                    spc.remove(name, **kw)
                return args.files / elapsed
            contenders["smbprotocol"] = smbprotocol_run
        except ImportError:
            print("# smbprotocol not installed: skipped", file=sys.stderr)
        rounds = interleave(args.rounds, contenders)
        tree.close()

    med = {name: median(values) for name, values in rounds.items()}
    print()
    print(f"{args.files} files of {args.size} bytes (create + write + close), "
          f"{args.rounds} interleaved rounds, files/s (median)")
    print(table([[name, f"{v:,.0f}"] for name, v in med.items()], ["contender", "files/s"]))
    if "smbprotocol" in med:
        for name in ("tree.open", "tree.open durable=False", "write_bytes"):
            print(f"{name} / smbprotocol = {med[name] / med['smbprotocol']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
