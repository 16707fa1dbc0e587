#!/usr/bin/env python3
"""Bulk read and write over 1, 2 and 4 channels (multichannel, issue 23).

    python3 tools/bench_multichannel.py [--size 256M] [--rounds 3]
        [--channels 1,2,4] [--encrypt] [--kill-every 1.0]

A private Samba with ``server multi channel support`` lists 127.0.0.1
(RSS, 10 Gb/s); each contender is one session with N channels (1: no
multichannel) writing a ``--size`` file from memory through ``tree.open``
(16 MiB ``write`` calls, write-behind) and reading it back (16 MiB ``read``
calls, read-ahead), interleaved round after round.  Prints MB/s (median) and
the ratio to one channel, the CPU seconds per GB the client (every thread,
hashing excluded) and the Samba processes spent (medians: on a loaded machine
they vary far less than MB/s), and the share of the READs and WRITEs each
channel carried over all rounds (0 first).  ``--spill-delay MS`` sets the
routing policy's ``ChannelSet.spill_delay`` (0: spread every request by
load, as before the spill-over policy).

``--kill-every S``: while transferring, destroy one extra channel every S
seconds from outside (``ss -K``): the bytes must come back exact, with no
reconnect of the session (the issue's 256 MiB run).  On loopback a transfer
stays on channel 0 (see smblayer.transport.picker): add ``--spill-delay 0``
to have requests in flight on the channels that are destroyed.

``--link MBPS``: every TCP connection goes through a link emulator that
paces each direction of each connection at MBPS MB/s
(:class:`smblayer.testing.link.LinkProcess`: in a process of its own, so
its threads take neither the client's GIL nor count as its CPU):
on loopback, one NIC of that speed per channel -- what the design gives
where the network, not the CPU, is the bottleneck.

The "paired" ratios are the median over rounds of each round's ratio to
one channel (the contenders of a round run back to back, so the load the
other processes put on the machine hits them alike); MB/s are medians.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import interleave, median, table  # noqa: E402

from smblayer import ReconnectPolicy, fs  # noqa: E402
from smblayer.testing.link import LinkProcess  # noqa: E402
from smblayer.testing.samba import SambaServer  # noqa: E402
from smblayer.transport.channels import ChannelSet  # noqa: E402

MULTICHANNEL = {"server multi channel support": "yes",
                "interfaces": '"127.0.0.1;capability=RSS,speed=10000000000"'}
CHUNK = 16 << 20
TICK = os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    """CPU seconds of this process (every thread) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu(server: SambaServer) -> float:
    """CPU seconds of the private Samba's live processes (every thread)."""
    total = 0
    for pid in server.children(include_helpers=True):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def killer(client, every: float, stop: threading.Event, kills: list) -> None:
    while not stop.wait(every):
        live = [ch for ch in client.channels[1:] if ch.state == "active" and ch.local_address]
        if live:
            victim = live[len(kills) % len(live)]
            subprocess.run(["ss", "-K", "src", "127.0.0.1", "sport", "=",
                            f":{victim.local_address[1]}"], capture_output=True)
            kills.append(victim.index)


def run(server: SambaServer, port: int, channels: int, data: bytes, digest: str,
        encrypt: bool, kill_every: float, spread: dict):
    options = {"multichannel": True, "max_channels": channels} if channels > 1 else {}
    tree = fs.connect(server.host, "share", server.username, server.password,
                      port=port, encrypt=encrypt,
                      reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=1.0), **options)
    with tree:
        client = tree.session.client
        session_id = tree.session.session_id
        stop, kills = threading.Event(), []
        thread = None
        if kill_every and channels > 1:
            thread = threading.Thread(target=killer, args=(client, kill_every, stop, kills),
                                      daemon=True)
            thread.start()
        try:
            cpu0, srv0 = client_cpu(), server_cpu(server)
            start = time.perf_counter()
            with tree.open("bench.bin", "wb") as f:
                for offset in range(0, len(data), CHUNK):
                    f.write(data[offset:offset + CHUNK])
            mid = time.perf_counter()
            cpu1, srv1 = client_cpu(), server_cpu(server)
            sha = hashlib.sha256()
            hashing = 0.0
            with tree.open("bench.bin", "rb") as f:
                while True:
                    block = f.read(CHUNK)
                    if not block:
                        break
                    t0 = time.thread_time()
                    sha.update(block)
                    hashing += time.thread_time() - t0
            end = time.perf_counter()
            cpu2, srv2 = client_cpu() - hashing, server_cpu(server)
        finally:
            stop.set()
            if thread is not None:
                thread.join(10)
        if sha.hexdigest() != digest:
            raise SystemExit(f"{channels} channels: the bytes read back differ")
        counters = client.stats()["_client"]
        if tree.session.session_id != session_id or counters["reconnects"]:
            raise SystemExit(f"{channels} channels: the session reconnected")
        stats = client.stats()
        data_ops = sum(stats.get(name, {}).get("ops", 0) for name in ("READ", "WRITE"))
        extra = [c["ops"] - c["binding_legs"] for c in counters["channels"]]
        shares = [data_ops - sum(extra)] + extra if extra else []
        ops, killed, failed = spread.get(channels, ([0] * len(shares), 0, 0))
        spread[channels] = ([a + b for a, b in zip(ops, shares)], killed + len(kills),
                            failed + sum(c["failovers"] for c in counters["channels"]))
    mb, gb = len(data) / 1e6, len(data) / 1e9
    return {"write": mb / (mid - start), "read": mb / (end - mid),
            "wcpu": (cpu1 - cpu0) / gb, "rcpu": (cpu2 - cpu1) / gb,
            "wsrv": (srv1 - srv0) / gb, "rsrv": (srv2 - srv1) / gb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256M")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", default="1,2,4")
    parser.add_argument("--encrypt", action="store_true")
    parser.add_argument("--kill-every", type=float, default=0.0)
    parser.add_argument("--link", type=float, default=0.0, metavar="MBPS",
                        help="pace each connection at MBPS MB/s per direction")
    parser.add_argument("--spill-delay", type=float, default=None, metavar="MS",
                        help="ChannelSet.spill_delay for the run in ms (default %g; "
                             "0: spread every request by load)" % (ChannelSet.spill_delay * 1e3))
    args = parser.parse_args()
    if args.spill_delay is not None:
        ChannelSet.spill_delay = args.spill_delay / 1e3
    size = parse_size(args.size)
    counts = [int(c) for c in args.channels.split(",")]
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    spread: dict = {}
    with SambaServer(extra_global=MULTICHANNEL) as server:
        link = LinkProcess((server.host, server.port), args.link * 1e6) if args.link else None
        port = link.port if link is not None else server.port
        print(f"# private Samba on 127.0.0.1:{server.port}; {size >> 20} MiB, "
              f"{'encrypted' if args.encrypt else 'plain'}, {args.rounds} rounds, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start"
              + (f", each connection paced at {args.link:g} MB/s" if link else "")
              + f", spill_delay {ChannelSet.spill_delay * 1e3:g} ms")
        results = interleave(args.rounds, {
            f"{n} channel{'s' if n > 1 else ''}":
                (lambda n=n: run(server, port, n, data, digest, args.encrypt,
                                 args.kill_every, spread))
            for n in counts})
        if link is not None:
            link.close()
    base = None
    rows = []
    for (name, values), n in zip(results.items(), counts):
        write = median([v["write"] for v in values])
        read = median([v["read"] for v in values])
        if base is None:
            base = values
        paired = {k: median([v[k] / b[k] for v, b in zip(values, base)])
                  for k in ("write", "read")}
        ops, kills, failovers = spread.get(n, ([], 0, 0))
        ops = [f"{100 * k / max(1, sum(ops)):.0f}%" for k in ops]
        cpu = "/".join(f"{median([v[k] for v in values]):.2f}"
                       for k in ("wcpu", "wsrv", "rcpu", "rsrv"))
        rows.append([name, f"{write:.0f}", f"{paired['write']:.2f}x", f"{read:.0f}",
                     f"{paired['read']:.2f}x", cpu, ",".join(map(str, ops)) or "-",
                     f"{kills}/{failovers}"])
    print(table(rows, ["contender", "write MB/s", "paired", "read MB/s", "paired",
                       "CPU s/GB w client/server, r client/server",
                       "READ/WRITE per channel (all rounds)", "kills/failovers"]))
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
