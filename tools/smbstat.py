#!/usr/bin/env python3
"""smbstat: per-command SMB statistics, live (like nfsiostat/mountstats).

    smbstat.py --pid PID [--interval 1]   a process that called
                                          smblayer.stats.install_stats_signal()
    smbstat.py --demo                     start a private Samba, run echoes and
                                          small file I/O, and watch them

Each refresh prints, per server and command: ops/s, KiB/s sent/received,
average RTT and execute time over the interval, retransmissions, timeouts,
plus reconnects and time spent "not responding"; with multichannel, one
line per extra channel (state, address, ops/s, KiB/s out, credits, requests
moved off it, re-establishments).  ``--demo --multichannel`` watches a
3-channel session.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from smblayer.stats import snapshot_all, stats_path  # noqa: E402


def read_pid(pid: int) -> dict:
    path = stats_path(pid)
    before = os.path.getmtime(path) if os.path.exists(path) else 0
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getmtime(path) != before:
            with open(path) as f:
                return json.load(f)
        threading.Event().wait(0.02)
    raise SystemExit(f"smbstat: process {pid} did not answer (install_stats_signal?)")


def render(prev: dict, cur: dict, dt: float) -> str:
    lines = []
    for server, stats in sorted(cur.items()):
        client = stats.get("_client", {})
        lines.append(f"{server}  {client.get('dialect')}  state={client.get('state')}  "
                     f"in_flight={client.get('in_flight')}  credits={client.get('credits')}  "
                     f"reconnects={client.get('reconnects')}  "
                     f"not_responding={client.get('not_responding_time', 0):.1f}s")
        old_channels = {c["index"]: c for c in prev.get(server, {}).get("_client", {})
                        .get("channels", [])}
        main = client.get("channel0")
        if main:
            lines.append(f"  channel 0 failovers={main['failovers']}  rebinds={main['rebinds']}  "
                         f"breaks={main.get('breaks', 0)}  break_acks={main.get('break_acks', 0)}")
        for ch in client.get("channels", []):
            o = old_channels.get(ch["index"], {})
            lines.append(f"  channel {ch['index']} {ch['state']:<7} {ch['address']:<16}"
                         f"ops/s={(ch['ops'] - o.get('ops', 0)) / dt:.0f}  KiB/s out="
                         f"{(ch['bytes_sent'] - o.get('bytes_sent', 0)) / dt / 1024:.1f}  "
                         f"credits={ch['credits']}  in_flight={ch['in_flight']}  "
                         f"failovers={ch['failovers']}  reconnects={ch['reconnects']}  "
                         f"breaks={ch.get('breaks', 0)}  break_acks={ch.get('break_acks', 0)}")
        lines.append(f"  {'command':<16}{'ops/s':>9}{'KiB/s out':>11}{'KiB/s in':>10}"
                     f"{'rtt ms':>9}{'exec ms':>9}{'retrans':>9}{'timeouts':>9}{'errors':>8}")
        old = prev.get(server, {})
        for name, c in sorted(stats.items()):
            if name.startswith("_"):
                continue
            o = old.get(name, {})
            ops = c["ops"] - o.get("ops", 0)
            if ops <= 0 and prev:
                continue
            rtt = (c["rtt"] - o.get("rtt", 0)) / max(ops, 1) * 1000
            exe = (c["exec_time"] - o.get("exec_time", 0)) / max(ops, 1) * 1000
            lines.append(
                f"  {name:<16}{ops / dt:>9.0f}"
                f"{(c['bytes_sent'] - o.get('bytes_sent', 0)) / dt / 1024:>11.1f}"
                f"{(c['bytes_recv'] - o.get('bytes_recv', 0)) / dt / 1024:>10.1f}"
                f"{rtt:>9.3f}{exe:>9.3f}{c['retransmissions']:>9}{c['timeouts']:>9}"
                f"{c['errors']:>8}")
    return "\n".join(lines)


def watch(source, interval: float, count: int) -> None:
    prev, t_prev = {}, time.monotonic()
    for i in range(count):
        threading.Event().wait(interval if i else 0)
        cur, now = source(), time.monotonic()
        print(time.strftime("%H:%M:%S"), file=sys.stdout)
        print(render(prev, cur, max(now - t_prev, 1e-6)), flush=True)
        prev, t_prev = cur, now


MULTICHANNEL = {"server multi channel support": "yes",
                "interfaces": '"127.0.0.1;capability=RSS,speed=10000000000"'}


def demo(interval: float, count: int, multichannel: bool = False) -> None:
    from smblayer import fs
    from smblayer.testing.samba import SambaServer
    with SambaServer(extra_global=MULTICHANNEL if multichannel else None) as server:
        tree = fs.connect(server.host, "share", server.username, server.password,
                          port=server.port,
                          **({"multichannel": True, "max_channels": 3} if multichannel else {}))
        stop = threading.Event()

        def load():
            data = os.urandom((4 << 20) if multichannel else 65536)
            i = 0
            while not stop.is_set():
                tree.client.echo()
                if hasattr(tree, "open"):
                    with tree.open(f"f{i % 8}.bin", "wb") as f:
                        f.write(data)
                i += 1
        workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for w in workers:
            w.start()
        try:
            watch(snapshot_all, interval, count)
        finally:
            stop.set()
            for w in workers:
                w.join(5)
            tree.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--pid", type=int, help="process to watch")
    group.add_argument("--demo", action="store_true", help="watch a built-in workload")
    parser.add_argument("--multichannel", action="store_true",
                        help="with --demo: a 3-channel session (bulk writes)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    if args.demo:
        demo(args.interval, args.count, args.multichannel)
    else:
        watch(lambda: read_pid(args.pid), args.interval, args.count)


if __name__ == "__main__":
    main()
