#!/usr/bin/env python3
"""Recursive download of a tree of small files: ``smblayer get -r`` vs
Samba's C smbclient (``recurse; prompt; mget *``).

    python3 tools/bench_rget.py [--files 1000] [--size 4K] [--dirs 10]
                                [--rounds 5] [--server //h:p/share]

The tree (``--files`` files of ``--size`` bytes spread over ``--dirs``
sub-directories) is made once on the share; then, round after round and
interleaved, each contender copies it whole into an empty directory on
tmpfs (the local disk is not measured), in one process each:

* smblayer: ``python3 -m smblayer get -r //host:port/share/DIR DEST``
* smbclient: ``smbclient //host/share -D DIR -c "recurse; prompt; mget *"``
  run in DEST

Both pay a process start, connect and authentication per round (Python's
bytecode is cached in a temporary PYTHONPYCACHEPREFIX, as for an installed
package); the figure is the median wall time and files/s.  The copies are checked
(file count and bytes) after every run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import (add_server_args, interleave, median, server_from_args,  # noqa: E402
                       shm_dir, table, time_process)

from smblayer import fs  # noqa: E402
from smblayer.cli import parse_size  # noqa: E402


def make_tree(srv, name: str, files: int, size: int, dirs: int) -> None:
    """``files`` files under ``name`` on the share (written locally when the
    Samba is ours, else through smblayer)."""
    data = os.urandom(size)
    paths = [f"d{i % dirs:03d}/f{i:05d}.bin" for i in range(files)]
    if srv.samba is not None:
        root = srv.samba.share_path(srv.share) / name
        for p in paths:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            (root / p).write_bytes(data)
        return
    with fs.connect(srv.host, srv.share, srv.username, srv.password, port=srv.port) as tree:
        tree.mkdir(name)
        for i in range(dirs):
            tree.mkdir(f"{name}/d{i:03d}")
        for p in paths:
            tree.write_bytes(f"{name}/{p}", data)


def remove_tree(srv, name: str) -> None:
    if srv.samba is not None:
        shutil.rmtree(srv.samba.share_path(srv.share) / name, ignore_errors=True)
        return
    with fs.connect(srv.host, srv.share, srv.username, srv.password, port=srv.port) as tree:
        for i in range(1000):
            d = f"{name}/d{i:03d}"
            if not tree.exists(d):
                break
            for entry in tree.listdir(d):
                tree.remove(f"{d}/{entry}")
            tree.rmdir(d)
        tree.rmdir(name)


def check_copy(dest: str, files: int, size: int) -> None:
    count = total = 0
    for dirpath, _dirs, names in os.walk(dest):
        for n in names:
            count += 1
            total += os.path.getsize(os.path.join(dirpath, n))
    if (count, total) != (files, files * size):
        raise RuntimeError(f"copy in {dest} has {count} files / {total} bytes, "
                           f"expected {files} / {files * size}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_args(p)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--size", type=parse_size, default=4096)
    p.add_argument("--dirs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    with server_from_args(args) as srv:
        name = f"bench-rget-{uuid.uuid4().hex[:8]}"
        make_tree(srv, name, args.files, args.size, args.dirs)
        env = dict(os.environ, SMB_USER=srv.username, SMB_PASSWORD=srv.password)
        env["PYTHONPATH"] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        work = tempfile.mkdtemp(prefix="smbl-rget-", dir=shm_dir())
        # Compiled once, as an installed package is (PYTHONDONTWRITEBYTECODE
        # would make every run compile smblayer again: ~0.2 s of a ~0.5 s run).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")

        def fresh(label: str) -> str:
            dest = os.path.join(work, label)
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest)
            return dest

        def smblayer_get() -> float:
            dest = fresh("smblayer")
            t = time_process([sys.executable, "-m", "smblayer", "get", "-r",
                              f"{srv.url}/{name}", os.path.join(dest, name)], env=env)
            check_copy(dest, args.files, args.size)
            return t

        def smbclient_mget() -> float:
            dest = fresh("smbclient")
            t = time_process(srv.smbclient_argv(args=["-D", name, "-c",
                                                      "recurse; prompt; mget *"]), cwd=dest)
            check_copy(dest, args.files, args.size)
            return t

        try:
            results = interleave(args.rounds, {"smblayer get -r": smblayer_get,
                                               "smbclient mget": smbclient_mget})
        finally:
            shutil.rmtree(work, ignore_errors=True)
            remove_tree(srv, name)

    summary = {k: {"median_s": median(v), "files_per_s": args.files / median(v)}
               for k, v in results.items()}
    ratio = summary["smbclient mget"]["median_s"] / summary["smblayer get -r"]["median_s"]
    if args.json:
        print(json.dumps({"files": args.files, "size": args.size, "rounds": args.rounds,
                          "results": summary, "smblayer_speedup": ratio}, indent=2))
        return 0
    print(f"# recursive get of {args.files} files x {args.size} bytes in {args.dirs} dirs, "
          f"{args.rounds} rounds (median)")
    print(table([(k, f"{v['median_s']:.3f}", f"{v['files_per_s']:,.0f}")
                 for k, v in summary.items()], ["contender", "seconds", "files/s"]))
    print(f"smblayer get -r is {ratio:.2f}x smbclient's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
