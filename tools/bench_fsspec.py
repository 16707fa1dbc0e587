#!/usr/bin/env python3
"""fsspec on SMB: smblayer.fsspec.SMBFileSystem ("smblayer://") vs fsspec's
own smbprotocol-based SMBFileSystem ("smb://"), same Samba, interleaved.

    python3 tools/bench_fsspec.py [--rounds 3] [--entries 5000] [--files 100]
                                  [--size 1M] [--server //h:p/share] [--json]

Two measurements, each contender once per round (rotating order), medians:

* ls: ``fs.ls(dir, detail=True)`` of a directory of ``--entries`` files
  (what fsspec's glob/find/walk and every "list the dataset" step do).
  smblayer answers from the directory query; fsspec's smb stats each entry.
* dask: ``dask.bytes.read_bytes(url + "/*", blocksize=None)`` of ``--files``
  files of ``--size`` each, computed on a distributed LocalCluster with two
  worker processes (two threads each); the figure is the wall time of the
  compute, after one untimed warm-up round per contender (worker processes
  keep their fsspec instances and connections, as in real use).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import (add_server_args, interleave, median, server_from_args,  # noqa: E402
                       table)

import fsspec  # noqa: E402

from smblayer import fs as smbfs  # noqa: E402
from smblayer.cli import parse_size  # noqa: E402


def register() -> None:
    try:
        fsspec.get_filesystem_class("smblayer")
    except ValueError:       # a checkout, not installed with its entry point
        fsspec.register_implementation("smblayer", "smblayer.fsspec.SMBFileSystem")


def populate(srv, directory: str, count: int, size: int, prefix: str) -> None:
    """``count`` files of ``size`` bytes under ``directory`` (on disk for a
    private Samba, through smblayer otherwise)."""
    data = os.urandom(size)
    if srv.samba is not None:
        local = srv.samba.share_path(srv.share) / directory
        local.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (local / f"{prefix}{i:05d}").write_bytes(data)
        return
    with smbfs.connect(srv.host, srv.share, srv.username, srv.password, port=srv.port) as tree:
        tree.makedirs(directory, exist_ok=True)
        for i in range(count):
            tree.write_bytes(f"{directory}/{prefix}{i:05d}", data)


def remove(srv, directory: str) -> None:
    with smbfs.connect(srv.host, srv.share, srv.username, srv.password, port=srv.port) as tree:
        tree.rmtree(directory, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_args(p)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--entries", type=int, default=5000, help="entries of the ls directory")
    p.add_argument("--files", type=int, default=100, help="files read through Dask")
    p.add_argument("--size", type=parse_size, default=1 << 20, help="size of each Dask file")
    p.add_argument("--skip", choices=("ls", "dask"), action="append", default=[])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    register()
    from fsspec.implementations.smb import SMBFileSystem as FsspecSMB

    from smblayer.fsspec import SMBFileSystem

    results: dict = {}
    with server_from_args(args) as srv:
        base = f"bench-fsspec-{uuid.uuid4().hex[:8]}"
        creds = {"username": srv.username, "password": srv.password}
        ours = SMBFileSystem(host=srv.host, port=srv.port, **creds)
        theirs = FsspecSMB(host=srv.host, port=srv.port, **creds)
        try:
            if "ls" not in args.skip:
                populate(srv, f"{base}/ls", args.entries, 0, "entry-")
                path = f"{srv.share}/{base}/ls"

                def ls(fs, path):
                    def run():
                        t0 = time.perf_counter()
                        n = len(fs.ls(path, detail=True))
                        elapsed = time.perf_counter() - t0
                        assert n == args.entries, n
                        return elapsed
                    return run

                ls(ours, path)()                      # connect outside the timing
                ls(theirs, "/" + path)()
                times = interleave(args.rounds, {"smblayer": ls(ours, path),
                                                 "fsspec-smb": ls(theirs, "/" + path)})
                results["ls"] = {k: median(v) for k, v in times.items()}
            if "dask" not in args.skip:
                import dask
                import dask.bytes
                import distributed

                populate(srv, f"{base}/dask", args.files, args.size, "part-")
                server = f"{srv.host}:{srv.port}/{srv.share}/{base}/dask/*"
                urls = {"smblayer": f"smblayer://{server}", "fsspec-smb": f"smb://{server}"}
                with distributed.LocalCluster(n_workers=2, threads_per_worker=2,
                                              processes=True, dashboard_address=None,
                                              silence_logs=40) as cluster, \
                        distributed.Client(cluster):

                    def read(url):
                        def run():
                            t0 = time.perf_counter()
                            _sample, blocks = dask.bytes.read_bytes(url, blocksize=None,
                                                                    sample=False, **creds)
                            sizes = dask.compute(*[dask.delayed(len)(b[0]) for b in blocks])
                            elapsed = time.perf_counter() - t0
                            assert sum(sizes) == args.files * args.size, sum(sizes)
                            return elapsed
                        return run

                    contenders = {name: read(url) for name, url in urls.items()}
                    for run in contenders.values():
                        run()                         # warm-up: workers connect
                    times = interleave(args.rounds, contenders)
                results["dask"] = {k: median(v) for k, v in times.items()}
        finally:
            ours.close()
            remove(srv, base)

    rows = []
    if "ls" in results:
        r = results["ls"]
        rows.append([f"ls -l of {args.entries} entries", f"{r['smblayer'] * 1000:.0f} ms",
                     f"{r['fsspec-smb'] * 1000:.0f} ms",
                     f"{r['fsspec-smb'] / r['smblayer']:.1f}x"])
    if "dask" in results:
        r = results["dask"]
        mib = args.files * args.size / (1 << 20)
        rows.append([f"Dask: {args.files} x {args.size >> 10} KiB",
                     f"{r['smblayer'] * 1000:.0f} ms ({mib / r['smblayer']:.0f} MiB/s)",
                     f"{r['fsspec-smb'] * 1000:.0f} ms ({mib / r['fsspec-smb']:.0f} MiB/s)",
                     f"{r['fsspec-smb'] / r['smblayer']:.1f}x"])
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(rows, ["", "smblayer://", "smb:// (fsspec, smbprotocol)", "speed-up"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
