#!/usr/bin/env python3
"""Chaos soak (issue 26): mixed load and random faults, then a verdict.

    tools/soak.py --minutes 60
    tools/soak.py --minutes 0.3 --threads 2 --processes 1     (a smoke)

Theory of operation
-------------------
A private Samba (``share``, ``encrypted``, and ``full`` on a small tmpfs
when root can mount one) sits behind a FaultProxy.  Load comes from worker
threads in this process and from worker processes (``--child``), each on a
plain, signed or encrypted session through the proxy, each doing a random
mix of operations: bulk (MBs written and read back), small files, listing,
stat, watch (CHANGE_NOTIFY), fsspec and writes to the full disk.

A fault thread injects, at random times: TCP resets (the proxy), smbd
SIGSTOPped for a random span, a connection's smbd child killed, and a
Samba restart (at least one per run); the full disk keeps failing writes.

Every call is timed against ``--op-bound``; one that raises anything but
SmbError (or a builtin OSError subclass SmbError maps to) counts as broken.
Every write a call reported done enters a ledger (path, length, SHA-256),
whoever did it; files a worker retires are verified before removal, and at
the end, with the faults stopped, every file still in the ledger is read
back through a fresh connection and compared.  RSS and open descriptors
of every worker process are sampled; an upward trend (the last third's
median against the first third's, after warm-up) fails.  The RSS judged is
taken right after ``malloc_trim(0)``: without it RSS shows glibc's arenas'
high-water mark (memory freed but kept for reuse), which climbs with the
largest bursts seen so far while nothing leaks; the untrimmed RSS and the
live Python heap blocks are reported next to it.

Sessions are plain, signed, encrypted or multichannel (2 channels, both
through the proxy), spread over the threads of this process and of the
worker processes.

The verdict: PASS only if no reported-written byte was lost, no thread
died, no call outlived its bound, no call failed with a non-SMB error and
RSS/FDs are flat.  A table of operations and faults is printed (``--json``
writes it too).
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import pathlib
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smblayer import (Dialect, DialectRange, ReconnectPolicy, SmbError,  # noqa: E402
                      TimeoutPolicy, fs)

MODES = ("plain", "signed", "encrypted", "multichannel")
KINDS = ("bulk", "small", "list", "stat", "watch", "fsspec", "aio", "full")
TIMEOUTS = TimeoutPolicy(timeout=5.0, echo_interval=1.0, soft_timeout=10.0, connect_timeout=10.0)
RECONNECT = ReconnectPolicy(initial_delay=0.1, max_delay=2.0)
#: Samba lists 127.0.0.1 for the multichannel sessions' second channel (through the proxy)
MULTICHANNEL = {"server multi channel support": "yes",
                "interfaces": '"127.0.0.1;capability=RSS,speed=10000000000"'}


def _password() -> str:
    """The Samba password, from the environment (never on a command line)."""
    return os.environ["SMBLAYER_SOAK_PASSWORD"]


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _malloc_trim():
    """glibc's malloc_trim, or None (another libc)."""
    try:
        import ctypes
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def _usage() -> Dict[str, int]:
    """One sample.  ``rss_raw``: VmRSS as it is -- it includes what glibc's
    per-thread arenas keep of memory already freed (their high-water mark,
    which a burst of 4 MiB bulk buffers on a dozen threads raises);
    ``rss``: VmRSS right after ``malloc_trim(0)`` handed those free pages
    back, i.e. what the process really holds (the verdict judges this one);
    ``blocks``: live Python heap blocks (``sys.getallocatedblocks``)."""
    raw = _rss()
    if _TRIM is not None:
        _TRIM(0)
    return {"rss": _rss(), "rss_raw": raw, "blocks": sys.getallocatedblocks(),
            "fds": len(os.listdir("/proc/self/fd"))}


class Ledger:
    """Files some call reported written: path -> (length, sha256)."""

    def __init__(self) -> None:
        self.files: Dict[str, tuple] = {}
        self.lock = threading.Lock()
        self.verified_bytes = 0
        self.verified_files = 0
        self.lost: List[str] = []

    def wrote(self, share: str, path: str, data: bytes) -> None:
        with self.lock:
            self.files[f"{share}/{path}"] = (len(data), hashlib.sha256(data).hexdigest())

    def check(self, share: str, path: str, data: bytes) -> None:
        key = f"{share}/{path}"
        with self.lock:
            length, digest = self.files.pop(key)
            if len(data) == length and hashlib.sha256(data).hexdigest() == digest:
                self.verified_bytes += length
                self.verified_files += 1
            else:
                self.lost.append(key)


class Worker:
    """One thread's load on one session (``mode``)."""

    def __init__(self, name: str, args, mode: str, ledger: Ledger, stats: "Stats"):
        self.name, self.args, self.mode = name, args, mode
        self.ledger, self.stats = ledger, stats
        self.rng = random.Random(f"{args.seed}:{name}")
        # share -> the paths this worker wrote there, oldest first
        self.mine: Dict[str, List[str]] = collections.defaultdict(list)
        self.n = 0

    def options(self) -> dict:
        extra = {"plain": {}, "signed": {"require_signing": True},
                 "encrypted": {"encrypt": True},
                 "multichannel": {"multichannel": True, "max_channels": 2}}[self.mode]
        lowest = {"encrypted": Dialect.SMB3_1_1, "multichannel": Dialect.SMB3_0}
        return dict(port=self.args.port, timeouts=TIMEOUTS, reconnect=RECONNECT,
                    dialects=DialectRange(lowest.get(self.mode, Dialect.SMB2_1),
                                          Dialect.SMB3_1_1), **extra)

    def connect(self, share: str):
        return fs.connect(self.args.host, share, self.args.user, _password(), **self.options())

    def run(self, deadline: float) -> None:
        trees: Dict[str, object] = {}
        try:
            while time.monotonic() < deadline:
                kind = self.rng.choice(KINDS if self.args.full else KINDS[:-1])
                share = "full" if kind == "full" else "share"
                started = time.monotonic()
                try:
                    tree = trees.get(share)
                    if tree is None:
                        tree = trees[share] = self.connect(share)
                    getattr(self, kind)(tree, share)
                    outcome = "ok"
                except SmbError as exc:
                    outcome = "smb_error"
                    self.stats.error(kind, exc, time.monotonic() - started)
                except Exception as exc:  # noqa: BLE001 - counted as broken, not swallowed
                    outcome = "broken"
                    self.stats.broken.append(f"{self.name} {kind}: {type(exc).__name__}: {exc}")
                self.stats.op(kind, outcome, time.monotonic() - started, self.args.op_bound,
                              self.mode)
        finally:
            for tree in trees.values():
                try:
                    tree.close()
                except SmbError:
                    pass

    # -- operations --------------------------------------------------------------------

    def _name(self) -> str:
        self.n += 1
        return f"soak-{self.name}-{self.n}.bin"

    def _write(self, tree, share: str, data: bytes) -> None:
        path = self._name()
        tree.write_bytes(path, data)
        self.ledger.wrote(share, path, data)
        self.stats.bytes_written += len(data)
        mine = self.mine[share]
        mine.append(path)
        while len(mine) > 12:                           # retire the oldest, verified
            self._retire(tree, share)

    def _retire(self, tree, share: str) -> None:
        old = self.mine[share][0]
        self.ledger.check(share, old, tree.read_bytes(old))
        self.mine[share].pop(0)
        tree.remove(old)

    def bulk(self, tree, share) -> None:
        self._write(tree, share, self.rng.randbytes(self.rng.randint(1, 4) << 20))

    def small(self, tree, share) -> None:
        for _ in range(self.rng.randint(3, 10)):
            self._write(tree, share, self.rng.randbytes(self.rng.randint(1, 12000)))

    def list(self, tree, share) -> None:
        tree.listdir("")

    def stat(self, tree, share) -> None:
        if self.mine[share]:
            tree.stat(self.mine[share][-1])

    def watch(self, tree, share) -> None:
        watch = tree.watch("")
        try:
            self._write(tree, share, b"watched %d" % self.n)
            watch.next(timeout=5.0)
        finally:
            watch.close()

    def fsspec(self, tree, share) -> None:
        import fsspec
        fsys = fsspec.filesystem("smblayer", host=self.args.host, port=self.args.port,
                                 username=self.args.user, password=_password(),
                                 timeouts=TIMEOUTS, reconnect=RECONNECT, skip_instance_cache=True)
        path = self._name()
        data = self.rng.randbytes(self.rng.randint(1, 300000))
        with fsys.open(f"share/{path}", "wb") as f:
            f.write(data)
        self.ledger.wrote("share", path, data)
        self.stats.bytes_written += len(data)
        self.ledger.check("share", path, fsys.cat_file(f"share/{path}"))
        fsys.rm(f"share/{path}")

    def aio(self, tree, share) -> None:
        """The asyncio API (smblayer.aio) on the same session options: a
        file written and read back from a coroutine."""
        import asyncio
        from smblayer import aio
        path = self._name()
        data = self.rng.randbytes(self.rng.randint(1, 400000))

        async def run() -> bytes:
            async with aio.connect(self.args.host, share, self.args.user, _password(),
                                   **self.options()) as atree:
                await atree.write_bytes(path, data)
                self.ledger.wrote(share, path, data)
                self.stats.bytes_written += len(data)
                back = await atree.read_bytes(path)
                self.ledger.check(share, path, back)
                await atree.remove(path)
                return back

        asyncio.run(run())

    def full(self, tree, share) -> None:
        """The tmpfs share: fill it; a write either fails (SmbError, disk
        full) or is in the ledger like any other."""
        try:
            self._write(tree, share, self.rng.randbytes(self.rng.randint(1, 3) << 20))
        except SmbError:
            self.stats.disk_full += 1
            if self.mine[share]:                        # make room again, verified
                self._retire(tree, share)
            raise


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.modes: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.max_seconds = 0.0
        self.outlived: List[str] = []
        self.broken: List[str] = []
        self.died: List[str] = []
        self.bytes_written = 0
        self.disk_full = 0
        self.samples: List[dict] = []
        self.growth: List[str] = []             # --tracemalloc's report
        # "kind: ErrorClass: message head" -> count, and the seconds they took
        self.errors: collections.Counter = collections.Counter()
        self.error_seconds: Dict[str, float] = collections.defaultdict(float)

    def error(self, kind: str, exc: BaseException, seconds: float) -> None:
        """Classify an SmbError: which operation, which class, what it said
        (numbers stripped, so one cause is one line)."""
        text = re.sub(r"[0-9]+(\.[0-9]+)?", "N", str(exc).split(";")[0])[:70]
        key = f"{kind}: {type(exc).__name__}: {text}"
        with self.lock:
            self.errors[key] += 1
            self.error_seconds[key] += seconds

    def op(self, kind: str, outcome: str, seconds: float, bound: float, mode: str) -> None:
        with self.lock:
            self.ops[kind][outcome] += 1
            self.modes[mode][outcome] += 1
            self.max_seconds = max(self.max_seconds, seconds)
            if seconds > bound:
                self.outlived.append(f"{kind} {seconds:.1f} s")

    def as_dict(self) -> dict:
        return {"ops": {k: dict(v) for k, v in self.ops.items()},
                "modes": {k: dict(v) for k, v in self.modes.items()},
                "max_seconds": round(self.max_seconds, 1), "outlived": self.outlived,
                "broken": self.broken, "died": self.died, "bytes_written": self.bytes_written,
                "disk_full": self.disk_full, "samples": self.samples,
                "errors": dict(self.errors), "growth": self.growth,
                "error_seconds": {k: round(v, 1) for k, v in self.error_seconds.items()}}


def run_workers(args, ledger: Ledger, stats: Stats, seconds: float, tag: str) -> None:
    """``args.threads`` workers for ``seconds``; samples RSS/FDs meanwhile."""
    threading.excepthook = lambda a: stats.died.append(f"{a.thread.name}: {a.exc_value!r}")
    deadline = time.monotonic() + seconds
    threads = []
    for i in range(args.threads):
        mode = MODES[(args.mode_offset + i) % len(MODES)]
        worker = Worker(f"{tag}t{i}", args, mode, ledger, stats)
        threads.append(threading.Thread(target=worker.run, args=(deadline,), name=worker.name))
    tracer = Tracer(seconds) if args.tracemalloc else None
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        stats.samples.append(_usage())
        if tracer is not None:
            tracer.tick()
        for t in threads:
            t.join(timeout=max(0.1, min(args.sample, deadline - time.monotonic())) / len(threads))
    for t in threads:
        t.join()
    if tracer is not None:
        stats.growth = tracer.growth()


class Tracer:
    """``--tracemalloc``: what the process's Python heap gained between the
    end of warm-up (15 % of the run) and the end, by allocation site."""

    def __init__(self, seconds: float) -> None:
        import tracemalloc
        self._tm = tracemalloc
        tracemalloc.start(8)
        self._warm = time.monotonic() + 0.15 * seconds
        self._first = None

    def tick(self) -> None:
        if self._first is None and time.monotonic() >= self._warm:
            self._first = self._tm.take_snapshot()

    def growth(self, top: int = 12) -> List[str]:
        if self._first is None:
            return []
        last = self._tm.take_snapshot()
        drop = (self._tm.Filter(False, self._tm.__file__),)
        diff = last.filter_traces(drop).compare_to(self._first.filter_traces(drop),
                                                   "traceback")
        lines = [f"total traced {sum(s.size for s in last.statistics('filename')) >> 10} KiB"]
        for stat in diff[:top]:
            frames = " < ".join(f"{pathlib.Path(f.filename).name}:{f.lineno}"
                                for f in reversed(stat.traceback[-4:]))   # allocation first
            lines.append(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {frames}")
        return lines


# --- the child process --------------------------------------------------------------------

def child(args) -> int:
    ledger, stats = Ledger(), Stats()
    run_workers(args, ledger, stats, args.seconds, f"p{os.getpid()}")
    out = stats.as_dict()
    out["ledger"] = ledger.files
    out["verified_bytes"], out["verified_files"] = ledger.verified_bytes, ledger.verified_files
    out["lost"] = ledger.lost
    print(json.dumps(out))
    return 0


# --- faults -------------------------------------------------------------------------------

class Faults:
    def __init__(self, samba, proxy, rng: random.Random, stop: threading.Event, seconds: float):
        self.samba, self.proxy, self.rng, self.stop = samba, proxy, rng, stop
        self.counts: collections.Counter = collections.Counter()
        self.restart_at = time.monotonic() + rng.uniform(0.3, 0.7) * seconds

    def run(self, mean_gap: float) -> None:
        while not self.stop.wait(self.rng.expovariate(1 / mean_gap)):
            if self.restart_at and time.monotonic() >= self.restart_at:
                self.restart_at = 0
                self.samba.restart()
                self.counts["samba_restart"] += 1
                continue
            kind = self.rng.choice(("tcp_reset", "sigstop", "kill_child"))
            try:
                getattr(self, kind)()
            except (ProcessLookupError, OSError):
                self.counts[kind + "_missed"] += 1

    def tcp_reset(self) -> None:
        self.proxy.reset()
        self.counts["tcp_reset"] += 1

    def sigstop(self) -> None:
        pids = [self.samba.pid] + self.samba.children()
        span = self.rng.uniform(0.5, 8.0)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            self.stop.wait(span)
        finally:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        self.counts["sigstop"] += 1
        self.counts["sigstop_seconds"] += round(span)

    def kill_child(self) -> None:
        children = self.samba.children()
        if not children:
            raise ProcessLookupError
        os.kill(self.rng.choice(children), signal.SIGKILL)
        self.counts["smbd_child_killed"] += 1


# --- the verdict ----------------------------------------------------------------------------

#: fewer samples than this (after warm-up) say nothing about a trend: not judged
MIN_SAMPLES = 30


def trend(samples: List[dict], key: str) -> tuple:
    """(first third median, last third median) after the first 15 % (warm-up)."""
    values = [s[key] for s in samples[len(samples) * 15 // 100:]]
    if len(values) < 6:
        return (values[0], values[-1]) if values else (0, 0)
    third = len(values) // 3
    return statistics.median(values[:third]), statistics.median(values[-third:])


def flat(samples: List[dict]) -> tuple:
    """Judged: RSS after malloc_trim (what the process holds) and FDs.
    Reported too: RSS before the trim (glibc's high-water) and Python
    heap blocks."""
    rss0, rss1 = trend(samples, "rss")
    fd0, fd1 = trend(samples, "fds")
    raw0, raw1 = trend(samples, "rss_raw") if "rss_raw" in samples[0] else (rss0, rss1)
    blk0, blk1 = trend(samples, "blocks") if "blocks" in samples[0] else (0, 0)
    judged = len(samples) * 85 // 100 >= MIN_SAMPLES
    ok = not judged or (rss1 <= rss0 * 1.25 + 16 * 2 ** 20 and fd1 <= fd0 + 8)
    mb = lambda v: round(v / 2 ** 20, 1)  # noqa: E731
    return ok, {"rss_mb": [mb(rss0), mb(rss1)], "rss_raw_mb": [mb(raw0), mb(raw1)],
                "py_blocks": [blk0, blk1], "fds": [fd0, fd1], "judged": judged}


def verify_all(args, files: Dict[str, tuple], ledger: Ledger) -> None:
    """Read back every ledger file through a fresh, unfaulted connection."""
    trees = {}
    try:
        for key in sorted(files):
            share, path = key.split("/", 1)
            if share not in trees:
                trees[share] = fs.connect(args.host, share, args.user, _password(),
                                          port=args.samba_port, timeouts=TIMEOUTS)
            ledger.files[key] = files[key]
            try:
                data = trees[share].read_bytes(path)
            except SmbError as exc:
                ledger.files.pop(key)
                ledger.lost.append(f"{key} ({exc})")
                continue
            ledger.check(share, path, data)
    finally:
        for tree in trees.values():
            tree.close()


def main_run(args) -> int:
    from smblayer.testing.proxy import FaultProxy
    from smblayer.testing.samba import SambaServer
    seconds = args.minutes * 60
    mount = _tmpfs(args)
    shares = {"full": {"read only": "no", "path": mount}} if mount else {}
    args.full = bool(mount)
    stop = threading.Event()
    started = time.monotonic()
    samba = SambaServer(extra_shares=shares, extra_global=MULTICHANNEL)
    try:
        samba.start()
        with FaultProxy(samba.host, samba.port) as proxy:
            args.host, args.port, args.samba_port = samba.host, proxy.port, samba.port
            args.user = samba.username
            os.environ["SMBLAYER_SOAK_PASSWORD"] = samba.password
            faults = Faults(samba, proxy, random.Random(f"{args.seed}:faults"), stop, seconds)
            fault_thread = threading.Thread(target=faults.run, args=(args.fault_gap,),
                                            name="faults")
            children = [subprocess.Popen(
                [sys.executable, __file__, "--child", "--seconds", str(seconds),
                 "--threads", str(args.child_threads), "--host", args.host,
                 "--port", str(args.port), "--user", args.user,
                 "--seed", f"{args.seed}{i}", "--op-bound", str(args.op_bound),
                 "--mode-offset", str(args.threads + i * args.child_threads),
                 "--sample", str(args.sample)] + (["--full"] if args.full else [])
                + (["--tracemalloc"] if args.tracemalloc else []),
                stdout=subprocess.PIPE, text=True,
                env=dict(os.environ, SMBLAYER_SOAK_PASSWORD=samba.password))
                for i in range(args.processes)]
            fault_thread.start()
            ledger, stats = Ledger(), Stats()
            run_workers(args, ledger, stats, seconds, "m")
            results = []
            for c in children:
                out = c.communicate()[0]
                results.append(json.loads(out) if c.returncode == 0 and out else
                               {"died": [f"worker process {c.pid} exited {c.returncode}"]})
            stop.set()
            fault_thread.join()
            time.sleep(1.0)
        # the proxy is gone: verify straight against Samba, faults stopped
        files = dict(ledger.files)
        ledger.files.clear()
        for r in results:
            files.update(r.get("ledger", {}))
            ledger.verified_bytes += r.get("verified_bytes", 0)
            ledger.verified_files += r.get("verified_files", 0)
            ledger.lost += r.get("lost", [])
        verify_all(args, files, ledger)
    finally:
        samba.stop()
        if mount:
            subprocess.run(["umount", mount], check=False)
    return verdict(args, time.monotonic() - started, stats, results, ledger, faults)


def verdict(args, seconds, stats, results, ledger, faults) -> int:
    ops: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    modes: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for d in [stats.as_dict()] + results:
        for kind, c in d.get("ops", {}).items():
            ops[kind].update(c)
        for mode, c in d.get("modes", {}).items():
            modes[mode].update(c)
    died = stats.died + [x for r in results for x in r.get("died", [])]
    outlived = stats.outlived + [x for r in results for x in r.get("outlived", [])]
    broken = stats.broken + [x for r in results for x in r.get("broken", [])]
    flats = [flat(stats.samples)] + [flat(r["samples"]) for r in results if r.get("samples")]
    flat_ok = all(ok for ok, _ in flats)
    written = stats.bytes_written + sum(r.get("bytes_written", 0) for r in results)
    passed = not ledger.lost and not died and not outlived and not broken and flat_ok \
        and len(results) == args.processes
    print(f"\nchaos soak: {seconds / 60:.1f} min, {args.threads} threads + {args.processes} "
          f"processes x {args.child_threads} threads, modes {', '.join(MODES)}")
    print(f"{'operation':12} {'ok':>8} {'smb_error':>10} {'broken':>7}")
    for kind in sorted(ops):
        c = ops[kind]
        print(f"{kind:12} {c['ok']:>8} {c['smb_error']:>10} {c['broken']:>7}")
    total = sum(sum(c.values()) for c in ops.values())
    print(f"{'total':12} {total:>8}")
    for mode in sorted(modes):
        c = modes[mode]
        print(f"{mode + ' session':22} {c['ok']:>8} {c['smb_error']:>10} {c['broken']:>7}")
    print("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.counts.items())))
    print(f"bytes written {written}, verified {ledger.verified_bytes} in "
          f"{ledger.verified_files} files, lost {len(ledger.lost)}")
    print(f"longest call {max([stats.max_seconds] + [r.get('max_seconds', 0) for r in results])}"
          f" s (bound {args.op_bound} s), outlived {len(outlived)}, threads died {len(died)}, "
          f"non-SMB errors {len(broken)}")
    for _ok, figures in flats:
        print(f"RSS MB {figures['rss_mb'][0]} -> {figures['rss_mb'][1]} (trimmed; "
              f"untrimmed {figures['rss_raw_mb'][0]} -> {figures['rss_raw_mb'][1]}), "
              f"Python blocks {figures['py_blocks'][0]} -> {figures['py_blocks'][1]}, "
              f"FDs {figures['fds'][0]} -> {figures['fds'][1]}"
              + ("" if figures["judged"] else " (too few samples to judge a trend)"))
    for line in (ledger.lost + died + outlived + broken)[:20]:
        print("  ", line)
    errors: collections.Counter = collections.Counter()
    error_seconds: Dict[str, float] = collections.defaultdict(float)
    for d in [stats.as_dict()] + results:
        errors.update(d.get("errors", {}))
        for key, value in d.get("error_seconds", {}).items():
            error_seconds[key] += value
    if errors:
        print("SMB errors by cause (count, mean seconds):")
        for key, count in errors.most_common(25):
            print(f"  {count:6} {error_seconds[key] / count:6.1f} s  {key}")
    for who, d in [("main", stats.as_dict())] + [(f"child {i}", r)
                                                  for i, r in enumerate(results)]:
        if d.get("growth"):
            print(f"Python heap growth after warm-up ({who}):")
            for line in d["growth"]:
                print("  ", line)
    print("VERDICT:", "PASS" if passed else "FAIL")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            "minutes": round(seconds / 60, 1), "ops": {k: dict(v) for k, v in ops.items()},
            "total_ops": total, "modes": {k: dict(v) for k, v in modes.items()},
            "faults": dict(faults.counts), "bytes_written": written,
            "verified_bytes": ledger.verified_bytes, "verified_files": ledger.verified_files,
            "lost": ledger.lost, "died": died, "outlived": outlived, "broken": broken,
            "errors": dict(errors),
            "flat": [f for _ok, f in flats], "passed": passed}, indent=2))
    return 0 if passed else 1


def _tmpfs(args) -> Optional[str]:
    """A small tmpfs for the disk-full share, if root can mount one."""
    if args.no_full or os.geteuid() != 0:
        return None
    path = tempfile.mkdtemp(prefix="smblayer-soak-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", path],
                      capture_output=True).returncode != 0:
        os.rmdir(path)
        return None
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=3, help="worker threads in this process")
    p.add_argument("--processes", type=int, default=2, help="worker processes")
    p.add_argument("--child-threads", type=int, default=2)
    p.add_argument("--fault-gap", type=float, default=8.0, help="mean seconds between faults")
    p.add_argument("--op-bound", type=float, default=180.0, help="no call may take longer")
    p.add_argument("--sample", type=float, default=5.0, help="RSS/FD sampling interval")
    p.add_argument("--seed", default="26")
    p.add_argument("--no-full", action="store_true", help="no tmpfs disk-full share")
    p.add_argument("--json")
    p.add_argument("--tracemalloc", action="store_true",
                   help="report Python heap growth by allocation site (slower)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode-offset", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    p.add_argument("--host", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--user", help=argparse.SUPPRESS)
    p.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.threads = args.child_threads
        return child(args)
    return main_run(args)


if __name__ == "__main__":
    sys.exit(main())
