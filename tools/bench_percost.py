#!/usr/bin/env python3
"""Per-request cost (issue 21): two source trees, interleaved, on one Samba.

    python3 tools/bench_percost.py [--tree base=/path/to/old/checkout] [--rounds 3]
                                   [--duration 1.0]

The parent starts one private Samba, then runs one child process per tree
per round (the order rotating between rounds; ``PYTHONPATH`` picks the tree
the child imports smblayer from).  Every child measures, on the same Samba:

* ``raw loop``: one thread, one raw socket, ECHO then recv (µs per echo);
* ``raw pipelined``: one thread, one raw socket, 16 ECHOs in flight (echoes/s):
  the floor the concurrent figures are held to;
* ``sync``: one thread, ``client.echo()`` in a loop (µs per echo);
* ``threads16``: 16 threads sharing one client, ``echo()`` (echoes/s);
* ``async16``: ``echo_async()`` with 16 in flight from one thread (echoes/s);
* ``stat16``: 16 threads calling ``tree.stat()`` on one session (stats/s);
* ``smbprotocol16``: 16 threads on one smbprotocol connection (if installed);
* ``skeleton_async16`` / ``skeleton_threads16``: the ceiling of the design
  itself, the least a threaded Python client does per request (a receive
  thread, a MessageId table, a ``concurrent.futures.Future`` per request;
  no credits, timers, states, counters or signing), driven exactly as
  ``async16`` and ``threads16`` are.

Each figure also carries the CPU µs per request of the child process (all
threads).  The table gives medians over the rounds and the ratios to the raw
floors measured in the same child.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THREADS = 16
IN_FLIGHT = 16


class Skeleton:
    """The design's ceiling (see the module docstring): the ECHO frame and
    MessageIds of a ``Raw`` connection, a receive thread that settles one
    Future per reply, and nothing else."""

    def __init__(self, raw: Raw):
        self.sock, self.frame, self.mid = raw.sock, bytes(raw.frame), raw.mid
        self.pending: dict = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._receive, daemon=True).start()

    def echo_async(self):
        from concurrent.futures import Future
        future = Future()
        frame = bytearray(self.frame)
        with self.lock:
            mid = self.mid
            self.mid += 1
            self.pending[mid] = future
            struct.pack_into("<Q", frame, 28, mid)
            self.sock.sendall(frame)
        return future

    def echo(self) -> None:
        self.echo_async().result()

    def _receive(self) -> None:
        buf = bytearray(1 << 16)
        view = memoryview(buf)
        have = 0
        length_at, mid_at = struct.Struct(">I").unpack_from, struct.Struct("<Q").unpack_from
        while True:
            try:
                n = self.sock.recv_into(view[have:])
            except OSError:
                return
            if not n:
                return
            have += n
            pos = 0
            done = []
            while have - pos >= 4:
                length = length_at(buf, pos)[0]
                if have - pos < length + 4:
                    break
                with self.lock:
                    future = self.pending.pop(mid_at(buf, pos + 28)[0])
                done.append((future, bytes(view[pos + 4:pos + 4 + length])))
                pos += length + 4
            buf[:have - pos] = buf[pos:have]
            have -= pos
            for future, message in done:
                future.set_result(message)


# -- the child: runs against whichever smblayer PYTHONPATH gives ------------------------------

class Raw:
    """One raw socket, NEGOTIATE 3.1.1, a prebuilt 72-byte framed ECHO."""

    REPLY = 72

    def __init__(self, host: str, port: int):
        from smblayer.config import Dialect, DialectRange
        from smblayer.proto import smb2
        from smblayer.proto.framing import frame_prefix
        from smblayer.proto.negotiate import Negotiator
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        only = DialectRange(Dialect.SMB3_1_1, Dialect.SMB3_1_1)
        negotiator = Negotiator(only, client_guid=os.urandom(16), salt=os.urandom(32))
        request = negotiator.start().to_bytes()
        self.sock.sendall(frame_prefix(len(request)) + request)
        length = struct.unpack(">I", self._exact(4))[0]
        negotiator.receive(self._exact(length))
        body = struct.pack("<HH", 4, 0)
        # A first echo asks for a window of credits; the rest keep it steady.
        grow = smb2.pack_header(smb2.Command.ECHO, 1, credit_charge=1, credit_request=256)
        self.sock.sendall(frame_prefix(len(grow) + 4) + grow + body)
        self._exact(self.REPLY)
        header = smb2.pack_header(smb2.Command.ECHO, 0, credit_charge=1, credit_request=1)
        self.frame = bytearray(frame_prefix(len(header) + 4) + header + body)
        self.mid = 2

    def _exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("EOF")
            data += chunk
        return bytes(data)

    def loop(self, count: int) -> None:
        sock, frame, size = self.sock, self.frame, self.REPLY
        view = memoryview(bytearray(size))
        pack_mid = struct.Struct("<Q").pack_into
        mid = self.mid
        for _ in range(count):
            pack_mid(frame, 28, mid)
            mid += 1
            sock.sendall(frame)
            got = 0
            while got < size:
                got += sock.recv_into(view[got:], size - got)
        self.mid = mid

    def pipelined(self, count: int, depth: int) -> None:
        sock, size = self.sock, self.REPLY
        template = bytes(self.frame)
        batch = bytearray(template * depth)
        pack_mid = struct.Struct("<Q").pack_into
        mid = self.mid
        for i in range(depth):
            pack_mid(batch, i * size + 28, mid)
            mid += 1
        sock.sendall(batch)
        buf = memoryview(bytearray(size * depth * 4))
        sent, done, carry = depth, 0, 0
        while done < count:
            n = sock.recv_into(buf[carry:])
            carry += n
            whole = carry // size
            carry -= whole * size
            buf[:carry] = buf[whole * size:whole * size + carry]
            done += whole
            more = min(whole, count - sent)
            if more > 0:
                out = bytearray(template * more)
                for i in range(more):
                    pack_mid(out, i * size + 28, mid)
                    mid += 1
                sock.sendall(out)
                sent += more
        self.mid = mid


def context_switches() -> int:
    """Voluntary context switches of every thread of this process so far
    (a thread that blocks and is woken: one hand-off).  Threads that ended
    are not counted, which is why the workloads' threads are joined only
    after the second reading."""
    total = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            total += int(line.split()[1])
            except OSError:
                pass
    except OSError:
        return 0
    return total


SWITCHES = [0]


def _timed(fn, *args):
    """(wall s, process CPU s) of fn(*args); its context switches go to SWITCHES."""
    s0 = context_switches()
    c0, t0 = time.process_time(), time.perf_counter()
    fn(*args)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    SWITCHES[0] = max(0, context_switches() - s0) if not SWITCHES_LATE else SWITCHES_LATE.pop()
    return elapsed, cpu


SWITCHES_LATE: list = []


def _threads(fn, threads: int, duration: float) -> int:
    stop = threading.Event()
    counts = [0] * threads
    errors = []
    barrier = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        barrier.wait()
        n = 0
        try:
            while not stop.is_set():
                fn()
                n += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    s0 = context_switches()
    time.sleep(duration)
    stop.set()
    # read the counters before the workers exit (their counts go with them)
    SWITCHES_LATE.append(max(0, context_switches() - s0))
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts)


def _async(client, in_flight: int, duration: float) -> int:
    from concurrent.futures import FIRST_COMPLETED, wait
    done = 0
    pending = {client.echo_async() for _ in range(in_flight)}
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            fut.result()
            done += 1
            pending.add(client.echo_async())
    for fut in pending:
        fut.result()
        done += 1
    return done


class ThreadProfiles:
    """cProfile in every thread started from now on (and this one), timed
    with ``time.thread_time``: self times are CPU time, not waiting."""

    def __init__(self):
        import cProfile
        self._profiles = []
        self._lock = threading.Lock()

        def start(*_):
            profile = cProfile.Profile(time.thread_time)
            with self._lock:
                self._profiles.append(profile)
            profile.enable()          # replaces this hook in the thread
        self._start = start
        threading.setprofile(start)
        start()

    def clear(self) -> None:
        with self._lock:
            for profile in self._profiles:
                profile.clear()

    def dump(self, path: str) -> None:
        """Merge every thread's data.  Another thread's profiler is read, not
        disabled: disabling it here would close its open calls (a demux
        blocked in poll) with this thread's clock."""
        import pstats
        import types
        threading.setprofile(None)
        with self._lock:
            profiles = list(self._profiles)
        merged = None
        for profile in profiles:
            profile.snapshot_stats()
            if not profile.stats:
                continue
            snap = types.SimpleNamespace(stats=profile.stats, create_stats=lambda: None)
            if merged is None:
                merged = pstats.Stats(snap)
            else:
                merged.add(snap)
        merged.dump_stats(path)


class TimedLock:
    """A lock that adds up how long it was waited for and held."""

    def __init__(self, lock) -> None:
        self._lock = lock
        self.acquired = 0
        self.wait = self.hold = 0.0
        self._since = 0.0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        t0 = time.perf_counter()
        ok = self._lock.acquire(blocking, timeout)
        if ok:
            self._since = now = time.perf_counter()
            self.acquired += 1
            self.wait += now - t0
        return ok

    def release(self) -> None:
        self.hold += time.perf_counter() - self._since
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()

    def locked(self) -> bool:
        return self._lock.locked()


def time_locks(client) -> dict:
    """Replace the send lock and the MID-table lock by TimedLocks."""
    send = client._sender.lock
    inner = getattr(send, "_lock", None)       # the combining writer's SendLock
    locks = {"send lock": TimedLock(inner if inner is not None else send),
             "MID-table lock": TimedLock(client._inflight.lock)}
    if inner is not None:
        timed = send._lock = locks["send lock"]
        send.acquire, send.locked = timed.acquire, timed.locked
        client._sender._raw_lock = timed
    else:
        client._sender.lock = locks["send lock"]
    client._inflight.lock = locks["MID-table lock"]
    return locks


def child(args) -> None:
    profiles = ThreadProfiles() if args.profile else None
    import smblayer
    from smblayer import fs
    from smblayer.config import Dialect, DialectRange
    only = DialectRange(Dialect.SMB3_1_1, Dialect.SMB3_1_1)
    host, port, d = args.host, args.port, args.duration
    out = {"tree": os.path.dirname(os.path.dirname(smblayer.__file__))}

    def rate(name, fn, *a):
        wall, cpu = _timed(lambda: out.__setitem__("_n", fn(*a)))
        n = out.pop("_n")
        out[name] = {"per_s": n / wall, "cpu_us": cpu / n * 1e6, "switches": SWITCHES[0] / n}

    def per_op(name, fn, count):
        wall, cpu = _timed(fn, count)
        out[name] = {"us": wall / count * 1e6, "cpu_us": cpu / count * 1e6,
                     "switches": SWITCHES[0] / count}

    raw = Raw(host, port)
    client = smblayer.get_client(host, port, dialects=only)
    tree = fs.connect(host, args.share, args.user, args.password, port=port)
    for _ in range(200):                      # warm up
        client.echo()
        tree.stat(args.file)
    raw.loop(200)
    if profiles is not None:
        profiles.clear()
    locks = time_locks(client) if args.locks else None
    which = args.only.split(",") if args.only else None

    def want(name):
        return which is None or name in which

    count = max(200, int(d * 4000))
    if want("raw_loop"):
        per_op("raw_loop", raw.loop, count)
    if want("raw_pipelined"):
        rate("raw_pipelined", lambda: (raw.pipelined(count * 4, IN_FLIGHT), count * 4)[1])
    if want("sync"):
        def sync(n):
            echo = client.echo
            for _ in range(n):
                echo()
        per_op("sync", sync, count)
    if want("threads16"):
        rate("threads16", _threads, client.echo, THREADS, d)
    if want("async16"):
        rate("async16", _async, client, IN_FLIGHT, d)
    if want("stat16"):
        rate("stat16", _threads, lambda: tree.stat(args.file), THREADS, d)
    if want("skeleton_async16") or want("skeleton_threads16"):
        skeleton = Skeleton(Raw(host, port))
        for _ in range(200):
            skeleton.echo()
        if want("skeleton_async16"):
            rate("skeleton_async16", _async, skeleton, IN_FLIGHT, d)
        if want("skeleton_threads16"):
            rate("skeleton_threads16", _threads, skeleton.echo, THREADS, d)
        skeleton.sock.close()
    if want("smbprotocol16") and args.smbprotocol:
        try:
            import uuid
            from smbprotocol.connection import Connection, Dialects
        except ImportError:
            pass
        else:
            conn = Connection(uuid.uuid4(), host, port)
            conn.connect(Dialects.SMB_3_1_1)
            for _ in range(4):
                conn.echo(credit_request=64)
            rate("smbprotocol16", _threads, conn.echo, THREADS, d)
            conn.disconnect()
    if locks is not None:
        requests = sum(v.get("per_s", 0) * d for k, v in out.items()
                       if isinstance(v, dict) and k != "raw_pipelined") or 1
        out["locks"] = {name: {"per_request": lk.acquired / requests,
                               "hold_us": lk.hold / max(1, lk.acquired) * 1e6,
                               "wait_us": lk.wait / max(1, lk.acquired) * 1e6}
                        for name, lk in locks.items()}
    if profiles is not None:
        profiles.dump(args.profile)
    tree.close()
    client.release()
    raw.sock.close()
    print(json.dumps(out))


# -- the parent ----------------------------------------------------------------------------------

def parent(args) -> int:
    sys.path.insert(0, ROOT)
    from smblayer.testing.samba import SambaServer
    trees = dict(t.split("=", 1) for t in args.tree) if args.tree else {}
    trees.setdefault("this", ROOT)
    names = list(trees)
    results = {n: [] for n in names}
    with SambaServer() as samba:
        from smblayer import fs
        with fs.connect(samba.host, "share", samba.username, samba.password,
                        port=samba.port) as tree:
            with tree.open("percost.txt", "wb") as f:
                f.write(b"x" * 100)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                env = dict(os.environ, PYTHONPATH=trees[name])
                argv = [sys.executable, os.path.abspath(__file__), "--child",
                        "--host", samba.host, "--port", str(samba.port), "--share", "share",
                        "--user", samba.username, "--file", "percost.txt",
                        "--duration", str(args.duration)]
                if args.only:
                    argv += ["--only", args.only]
                if args.locks:
                    argv.append("--locks")
                if r == 0 and name == names[0]:
                    argv.append("--smbprotocol")
                proc = subprocess.run(argv, env=dict(env, SMB_PASSWORD=samba.password),
                                      stdout=subprocess.PIPE, text=True, check=True)
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                results[name].append(got)
                print(f"# round {r + 1} {name}: " + ", ".join(
                    f"{k} {v.get('per_s', v.get('us')):.0f}" for k, v in got.items()
                    if isinstance(v, dict) and k != "locks"), file=sys.stderr, flush=True)
                for lock, v in got.get("locks", {}).items():
                    print(f"#   {lock}: {v['per_request']:.1f} per request, held "
                          f"{v['hold_us']:.1f} µs, waited {v['wait_us']:.1f} µs on average",
                          file=sys.stderr, flush=True)
    report(results)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


def report(results) -> None:
    def med(name, key, field):
        vals = [r[key][field] for r in results[name] if key in r]
        return statistics.median(vals) if vals else float("nan")

    keys = ["raw_loop", "raw_pipelined", "sync", "threads16", "async16", "stat16",
            "smbprotocol16", "skeleton_async16", "skeleton_threads16"]
    print("medians; cpu: CPU µs per request (all threads); sw: voluntary context switches "
          "per request (hand-offs)")
    print(f"{'figure':<19}" + "".join(f"{n:>26}" for n in results))
    for key in keys:
        cells = []
        for name in results:
            if not any(key in r for r in results[name]):
                cells.append(f"{'-':>26}")
                continue
            field = "us" if key in ("raw_loop", "sync") else "per_s"
            unit = "µs" if field == "us" else "/s"
            cells.append(f"{med(name, key, field):>9,.0f}{unit} {med(name, key, 'cpu_us'):>4.0f}cpu "
                         f"{med(name, key, 'switches'):>4.1f}sw")
        print(f"{key:<19}" + "".join(cells))
    print()
    for name in results:
        floor = med(name, "raw_pipelined", "per_s")
        loop = med(name, "raw_loop", "us")
        print(f"{name}: sync/raw loop {med(name, 'sync', 'us') / loop:.2f} (<=1.3); "
              f"threads16/floor {med(name, 'threads16', 'per_s') / floor:.2f} (>=0.3); "
              f"async16/floor {med(name, 'async16', 'per_s') / floor:.2f} (>=0.5)")
        if any("skeleton_async16" in r for r in results[name]):
            print(f"{name}: the design's ceiling (skeleton): threads16/floor "
                  f"{med(name, 'skeleton_threads16', 'per_s') / floor:.2f}, async16/floor "
                  f"{med(name, 'skeleton_async16', 'per_s') / floor:.2f}")
    names = list(results)
    if len(names) > 1:
        a, b = names[0], names[-1]
        ratios = []
        for r_a, r_b in zip(results[a], results[b]):
            if "stat16" in r_a and "stat16" in r_b:
                ratios.append(r_b["stat16"]["per_s"] / r_a["stat16"]["per_s"])
        if ratios:
            print(f"stat16 {b}/{a}: {statistics.median(ratios):.2f}x (>= 2x), per round "
                  + ", ".join(f"{x:.2f}" for x in ratios))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", help="NAME=PATH of another source tree")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--only", help="comma-separated figures to measure")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--smbprotocol", action="store_true", help=argparse.SUPPRESS)
    for opt in ("--host", "--share", "--user", "--file"):
        p.add_argument(opt, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--profile", help=argparse.SUPPRESS)
    p.add_argument("--locks", action="store_true",
                   help="time the send and MID-table locks (use with --only)")
    args = p.parse_args()
    if args.child:
        args.password = os.environ.get("SMB_PASSWORD")
        child(args)
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
