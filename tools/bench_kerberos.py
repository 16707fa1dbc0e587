#!/usr/bin/env python3
"""Kerberos connection set-up cost against a private Samba AD DC:
TCP connect + NEGOTIATE + SESSION_SETUP (Kerberos, ticket in the cache) +
TREE_CONNECT, smblayer vs Samba's smbclient ``--use-kerberos=required``.

    python3 tools/bench_kerberos.py [--rounds 5] [--count 10]

It provisions and starts a :class:`smblayer.testing.addc.SambaAdDc` (about
5-10 s), gets alice's TGT with kinit, and runs, interleaved round after
round (the figure is the median ms per connection):

* smblayer: ``fs.connect(..., auth_protocol="kerberos")`` with the TGT and
  the service ticket in the cache, to a fresh client; until the Tree is
  returned (then closed, not timed).
* smbclient: one ``smbclient //dc1/share -I 127.0.0.1 --use-kerberos=required
  -c exit`` process per connection, minus the same process against a closed
  port (exec, libraries, config and client init up to the refused connect),
  as in tools/bench_connect.py.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import interleave, median, table, time_process  # noqa: E402

from smblayer import fs  # noqa: E402
from smblayer.testing.addc import SambaAdDc  # noqa: E402


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--count", type=int, default=10, help="connections per contender per round")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    with SambaAdDc() as dc, dc.environ():
        env = dict(os.environ)

        def smblayer_once() -> float:
            t0 = time.perf_counter()
            tree = fs.connect(dc.host, "share", port=dc.port, auth_protocol="kerberos")
            t1 = time.perf_counter()
            assert tree.session.mechanism == "kerberos"
            tree.close()
            return t1 - t0

        smbclient = dc.smbclient_command(["-c", "exit"])
        refused = [str(closed_port()) if a == str(dc.port) else a for a in smbclient]

        def per_conn(fn):
            def run() -> float:
                return median([fn() for _ in range(args.count)]) * 1e3
            return run

        contenders = {
            "smblayer kerberos": per_conn(smblayer_once),
            "smbclient kerberos process": per_conn(lambda: time_process(smbclient, env=env)),
            "smbclient refused": per_conn(lambda: time_process(refused, env=env,
                                                                check=False)),
        }
        for fn in contenders.values():       # warm-up: service tickets into the cache
            fn()
        rounds = interleave(args.rounds, contenders)
        med = {k: median(v) for k, v in rounds.items()}

    sl = med["smblayer kerberos"]
    sc = med["smbclient kerberos process"]
    sc_net = sc - med["smbclient refused"]
    print()
    print(f"Kerberos connect + negotiate + session setup + tree connect (ticket in the cache), "
          f"{args.rounds} interleaved rounds x {args.count}; ms per connection")
    rows = [[name, f"{med[name]:.2f}", f"{min(v):.2f}", f"{max(v):.2f}"]
            for name, v in rounds.items()]
    print(table(rows, ["contender", "median", "min", "max"]))
    print()
    print(f"smblayer (in-process, fresh client):        {sl:.2f} ms")
    print(f"smbclient minus refused-connect process:    {sc_net:.2f} ms")
    ratio = sl / sc_net if sc_net > 0 else None
    print("smblayer / (smbclient - refused)          = "
          + (f"{ratio:.2f}" if ratio is not None else "n/a"))
    if args.json:
        print(json.dumps({"rounds_ms": rounds, "median_ms": med, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
