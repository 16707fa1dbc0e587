#!/usr/bin/env python3
"""Connection set-up cost: TCP connect + NEGOTIATE + SESSION_SETUP (NTLM) +
TREE_CONNECT, smblayer vs Samba's C smbclient vs smbprotocol.

    python3 tools/bench_connect.py [--rounds 5] [--count 10] [--server //h:p/share]

Contenders, interleaved round after round (each round: ``--count``
connections per contender, the figure is the median ms per connection):

* smblayer: in-process ``fs.connect(...)`` to a fresh client (the previous
  one was fully released and closed); "connect" is until the Tree is
  returned, "close" is ``tree.close()`` (LOGOFF, TREE_DISCONNECT, socket
  close, threads joined).
* smbprotocol: Connection.connect + Session.connect + TreeConnect.connect,
  then the three disconnects.
* smbclient: one ``smbclient //host/share -c exit`` process per connection.
  A process start is included; smbclient cannot open a second connection
  within one process, so two baselines are measured and subtracted:
  ``smbclient --version`` (exec and loading the libraries) and smbclient
  against a closed port (also config loading and client init, up to the
  refused TCP connect).
* smblayer CLI: one ``python3 -m smblayer stat //host/share`` process, with
  ``python3 -c "import smblayer.cli"`` as its baseline (for scale only).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import (add_server_args, interleave, median, server_from_args,  # noqa: E402
                       table, time_process)

from smblayer import fs  # noqa: E402


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_args(p)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--count", type=int, default=10, help="connections per contender per round")
    p.add_argument("--no-cli", action="store_true", help="skip the smblayer CLI process contender")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    with server_from_args(args) as srv:
        host, port, share = srv.host, srv.port, srv.share
        close_times: dict = {"smblayer": [], "smbprotocol": []}

        def smblayer_once() -> float:
            t0 = time.perf_counter()
            tree = fs.connect(host, share, srv.username, srv.password, port=port)
            t1 = time.perf_counter()
            client = tree.client
            tree.close()
            close_times["smblayer"].append(time.perf_counter() - t1)
            assert client.refcount == 0 and client.state.value == "closed", client
            return t1 - t0

        try:
            from smbprotocol.connection import Connection
            from smbprotocol.session import Session
            from smbprotocol.tree import TreeConnect
        except ImportError:
            Connection = None

        def smbprotocol_once() -> float:
            t0 = time.perf_counter()
            conn = Connection(uuid.uuid4(), host, port)
            conn.connect()
            session = Session(conn, srv.username, srv.password)
            session.connect()
            tree = TreeConnect(session, rf"\\{host}\{share}")
            tree.connect()
            t1 = time.perf_counter()
            tree.disconnect()
            session.disconnect()
            conn.disconnect()
            close_times["smbprotocol"].append(time.perf_counter() - t1)
            return t1 - t0

        smbclient = srv.smbclient_argv(share, ["-c", "exit"])
        smbclient_version = [smbclient[0], "--version"]
        refused = [smbclient[0] if i == 0 else (str(closed_port()) if a == str(port) else a)
                   for i, a in enumerate(smbclient)]
        cli_env = dict(os.environ, SMB_USER=srv.username, SMB_PASSWORD=srv.password)
        cli = [sys.executable, "-m", "smblayer", "stat", f"//{host}:{port}/{share}"]
        py_base = [sys.executable, "-c", "import smblayer.cli"]

        def per_conn(fn):
            def run() -> float:
                return median([fn() for _ in range(args.count)]) * 1e3
            return run

        def refused_once() -> float:
            # smbclient exits 1 on the refused connect: that is the point.
            return time_process(refused, check=False)

        contenders = {
            "smblayer": per_conn(smblayer_once),
            "smbclient process": per_conn(lambda: time_process(smbclient)),
            "smbclient --version": per_conn(lambda: time_process(smbclient_version)),
            "smbclient refused": per_conn(refused_once),
        }
        if Connection is not None:
            contenders["smbprotocol"] = per_conn(smbprotocol_once)
        if not args.no_cli:
            contenders["smblayer CLI process"] = per_conn(
                lambda: time_process(cli, env=cli_env))
            contenders["python import baseline"] = per_conn(lambda: time_process(py_base))
        for fn in contenders.values():       # warm-up (caches, page cache)
            fn()
        for times in close_times.values():
            times.clear()
        rounds = interleave(args.rounds, contenders)
        med = {k: median(v) for k, v in rounds.items()}

    sl = med["smblayer"]
    sc = med["smbclient process"]
    sc_net = sc - med["smbclient refused"]
    sc_exec = sc - med["smbclient --version"]
    print()
    print(f"connect + negotiate + session setup + tree connect, {args.rounds} interleaved rounds "
          f"x {args.count} connections; ms per connection (median of round medians)")
    rows = [[name, f"{med[name]:.2f}", f"{min(v):.2f}", f"{max(v):.2f}"]
            for name, v in rounds.items()]
    print(table(rows, ["contender", "median", "min", "max"]))
    print()
    print(f"smblayer connect (in-process, fresh client):     {sl:.2f} ms   "
          f"close {median(close_times['smblayer']) * 1e3:.2f} ms")
    if "smbprotocol" in med:
        print(f"smbprotocol connect (in-process):                {med['smbprotocol']:.2f} ms   "
              f"close {median(close_times['smbprotocol']) * 1e3:.2f} ms")
    print(f"smbclient per process, raw:                      {sc:.2f} ms")
    print(f"smbclient minus `--version` process:             {sc_exec:.2f} ms")
    print(f"smbclient minus refused-connect process:         {sc_net:.2f} ms "
          "(closest to its network+protocol time)")
    ratios = {"smblayer / smbclient raw process": sl / sc,
              "smblayer / (smbclient - --version)": sl / sc_exec if sc_exec > 0 else None,
              "smblayer / (smbclient - refused)": sl / sc_net if sc_net > 0 else None}
    if "smbprotocol" in med:
        ratios["smblayer / smbprotocol"] = sl / med["smbprotocol"]
    if "smblayer CLI process" in med:
        print(f"smblayer CLI process (stat of the share root):   {med['smblayer CLI process']:.2f} ms"
              f"  (python import baseline {med['python import baseline']:.2f} ms)")
    for k, v in ratios.items():
        print(f"{k:<36} = {v:.2f}" if v is not None else f"{k:<36} = n/a")
    if args.json:
        print(json.dumps({"rounds_ms": rounds, "median_ms": med, "ratios": ratios,
                          "close_ms": {k: median(v) * 1e3 for k, v in close_times.items() if v}},
                         indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
