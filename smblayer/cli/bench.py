"""``smblayer bench``: echo latency and throughput, bulk and small-file
I/O against one share.  The measuring functions are public: tools/ runs
them against other clients too (``bench_echo_threads`` takes anything with
an ``echo()``).
"""
from __future__ import annotations

import contextlib
import json
import os
import posixpath
import statistics
import threading
import time
from concurrent.futures import wait as wait_futures
from typing import Dict, List, Sequence

from ..errors import SmbError
from ..fs.transfer import chunk_size, write_all
from .connections import open_tree, parse_url, smb_path
from .progress import format_bytes


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_echo_latency(client, count: int) -> Dict[str, float]:
    """``count`` sequential echoes: median and p99 in µs."""
    client.echo()
    times = []
    clock = time.perf_counter
    for _ in range(count):
        t0 = clock()
        client.echo()
        times.append((clock() - t0) * 1e6)
    return {"count": count, "median_us": statistics.median(times),
            "p99_us": _percentile(times, 0.99)}


def bench_echo_threads(client, threads: int, duration: float) -> Dict[str, float]:
    """``threads`` threads echoing on one client for ``duration`` s: ops/s."""
    stop = threading.Event()
    counts = [0] * threads
    errors: List[BaseException] = []
    start_barrier = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        start_barrier.wait()
        n = 0
        try:
            while not stop.is_set():
                client.echo()
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    start_barrier.wait()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"threads": threads, "ops": sum(counts), "ops_per_s": sum(counts) / elapsed}


def bench_echo_async(client, in_flight: int, duration: float) -> Dict[str, float]:
    """Keep ``in_flight`` echo_async() requests outstanding for ``duration`` s."""
    done = 0
    pending = {client.echo_async() for _ in range(in_flight)}
    t0 = time.perf_counter()
    deadline = t0 + duration
    while time.perf_counter() < deadline:
        finished, pending = wait_futures(pending, return_when="FIRST_COMPLETED")
        for fut in finished:
            fut.result()
            done += 1
            pending.add(client.echo_async())
    for fut in pending:
        fut.result()
        done += 1
    elapsed = time.perf_counter() - t0
    return {"in_flight": in_flight, "ops": done, "ops_per_s": done / elapsed}


def bench_bulk(tree, path: str, size: int) -> Dict[str, float]:
    """Write then read a ``size``-byte file in large pipelined calls: MB/s."""
    chunk = chunk_size(tree)
    block = memoryview(os.urandom(min(size, chunk)))
    t0 = time.perf_counter()
    with tree.open(path, "wb", buffering=0) as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            write_all(f, block[:n])
            left -= n
    write_s = time.perf_counter() - t0
    buf = memoryview(bytearray(chunk))
    got = 0
    t0 = time.perf_counter()
    with tree.open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf[:min(chunk, max(size - got, tree.io_read_size))])
            if not n:
                break
            got += n
    read_s = time.perf_counter() - t0
    if got != size:
        raise SmbError(f"bench: read {got} bytes back, wrote {size}")
    return {"size": size, "write_MBps": size / write_s / 1e6, "read_MBps": size / read_s / 1e6,
            "write_s": write_s, "read_s": read_s}


def bench_small_files(tree, directory: str, count: int, size: int = 4096) -> Dict[str, float]:
    """Create+write ``size`` bytes+close ``count`` files: files/s."""
    data = os.urandom(size)
    names = [f"{directory}/f{i:05d}" for i in range(count)]
    t0 = time.perf_counter()
    for name in names:
        with tree.open(name, "wb") as f:
            f.write(data)
    elapsed = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in names:
        tree.write_bytes(name, data)          # one compound round trip on SMB2+
    elapsed_whole = time.perf_counter() - t0
    for name in names:
        tree.remove(name)
    return {"count": count, "size": size, "files_per_s": count / elapsed,
            "write_bytes_files_per_s": count / elapsed_whole}


def run_bench(tree, args) -> dict:
    client = tree.client
    base = smb_path(parse_url(args.url).path)
    workdir = posixpath.join(base, f".smblayer-bench-{os.getpid()}") if base \
        else f".smblayer-bench-{os.getpid()}"
    result: dict = {"server": f"{client.host}:{client.port}", "dialect": str(client.dialect),
                    "encrypted": bool(getattr(tree, "encrypt", False) or args.encrypt)}
    result["echo_latency"] = bench_echo_latency(client, args.count)
    result["echo_threads"] = bench_echo_threads(client, args.threads, args.duration)
    result["echo_async"] = bench_echo_async(client, 64, args.duration)
    tree.mkdir(workdir)
    try:
        bulk_path = f"{workdir}/bulk.bin"
        result["bulk"] = bench_bulk(tree, bulk_path, args.size)
        tree.remove(bulk_path)
        result["small_files"] = bench_small_files(tree, workdir, args.files)
    finally:
        with contextlib.suppress(SmbError):
            for name in tree.listdir(workdir):
                tree.remove(f"{workdir}/{name}")
        with contextlib.suppress(SmbError):
            tree.rmdir(workdir)
    return result


def format_bench(r: dict) -> str:
    lat, thr, asy = r["echo_latency"], r["echo_threads"], r["echo_async"]
    bulk, small = r["bulk"], r["small_files"]
    rows = [
        ("server", f"{r['server']}  dialect {r['dialect']}"
                   f"{'  encrypted' if r['encrypted'] else ''}"),
        ("echo latency", f"median {lat['median_us']:.0f} µs  p99 {lat['p99_us']:.0f} µs"
                         f"  ({lat['count']} sequential)"),
        ("echo threads", f"{thr['ops_per_s']:,.0f} ops/s  ({thr['threads']} threads)"),
        ("echo async", f"{asy['ops_per_s']:,.0f} ops/s  ({asy['in_flight']} in flight)"),
        ("bulk write", f"{bulk['write_MBps']:.1f} MB/s  ({format_bytes(bulk['size'])})"),
        ("bulk read", f"{bulk['read_MBps']:.1f} MB/s  ({format_bytes(bulk['size'])})"),
        ("small files", f"{small['files_per_s']:,.0f} files/s  "
                        f"({small['count']} x {format_bytes(small['size'])} create+write+close)"),
        ("small files, write_bytes", f"{small['write_bytes_files_per_s']:,.0f} files/s  "
                                     "(one compound each on SMB2+)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_bench(args) -> int:
    url = parse_url(args.url)
    with open_tree(args, url) as tree:
        result = run_bench(tree, args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_bench(result))
    return 0
