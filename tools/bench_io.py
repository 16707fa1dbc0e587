#!/usr/bin/env python3
"""Bulk file transfer: smblayer vs Samba's C smbclient vs smbprotocol.

    python3 tools/bench_io.py [--size 256M] [--rounds 3] [--server //h:p/share]

Each contender writes a ``--size`` file from a tmpfs (/dev/shm) source and
reads it back into tmpfs, on "share" (plain) and "encrypted" (SMB3
encryption required by the share), interleaved round after round.

* smblayer: ``smblayer.cli.upload``/``download`` (what ``smblayer put/get``
  do: 16 MiB calls, each pipelined as 1 MiB READ/WRITE requests) on a tree
  connected beforehand; ``encrypt=True`` on the encrypted share.  Timed
  from open to close.
* tree.open: the file-object API, 1 MiB ``f.write``/``f.read`` calls on a
  ``tree.open`` file (default buffering; write-behind and read-ahead).
* smbclient: one ``smbclient -c 'put LOCAL REMOTE'`` (``get``) process;
  ``--client-protection=encrypt`` on the encrypted share.  Its time includes
  the process start and connection set-up, measured separately with
  ``-c exit`` in the same round; both the raw and the net (minus set-up)
  figures are printed.
* smbprotocol: ``smbclient.open_file`` (its high-level API), 16 MiB
  write()/read() calls on a session registered beforehand.  Note: it signs
  on the plain share (require_signing=False breaks its 3.1.1 TREE_CONNECT,
  which must be signed), so its plain-share figures include signing.

With a private Samba its share directories live on tmpfs too (``--disk``
keeps them on the default temp dir), so no disk is measured.  Figures are
MB/s (10^6 bytes/s), median over the rounds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benchlib import (add_server_args, interleave, median, server_from_args,  # noqa: E402
                       shm_dir, table, time_process)

from smblayer import fs  # noqa: E402
from smblayer.cli import download, parse_size, upload  # noqa: E402

CALL = 16 * 1024 * 1024
FILEOBJ_CALL = 1024 * 1024


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_args(p)
    p.add_argument("--size", type=parse_size, default=256 * 1024 * 1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--encrypted-share", default="encrypted",
                   help="share that requires encryption (default 'encrypted'; '' to skip)")
    p.add_argument("--no-smbprotocol", action="store_true")
    p.add_argument("--disk", action="store_true",
                   help="keep the private Samba's shares in the default temp dir")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    if not args.server and not args.disk:
        tempfile.tempdir = shm_dir()        # SambaServer's temp dir (shares) on tmpfs
    work = tempfile.mkdtemp(prefix="smbl-bench-io-", dir=shm_dir())
    source = os.path.join(work, "source.bin")
    with open(source, "wb") as f:
        left = args.size
        while left:
            n = min(left, 1 << 24)
            f.write(os.urandom(n))
            left -= n
    source_hash = sha256_file(source)
    size = args.size

    try:
        with server_from_args(args) as srv:
            shares = [srv.share] + ([args.encrypted_share] if args.encrypted_share else [])
            trees = {share: fs.connect(srv.host, share, srv.username, srv.password, port=srv.port,
                                       encrypt=share != srv.share) for share in shares}
            checked = set()

            def verify(name: str, local: str) -> None:
                if os.path.getsize(local) != size:
                    raise RuntimeError(f"{name}: read back {os.path.getsize(local)} bytes")
                if name not in checked:                 # full hash once per contender
                    checked.add(name)
                    if sha256_file(local) != source_hash:
                        raise RuntimeError(f"{name}: the data read back differs")

            def smblayer_contender(share: str):
                tree = trees[share]
                name = f"smblayer/{share}"

                def run() -> dict:
                    remote = f"bench-io-smblayer-{uuid.uuid4().hex[:8]}.bin"
                    local = os.path.join(work, "smblayer.out")
                    with open(source, "rb") as src:
                        t0 = time.perf_counter()
                        upload(tree, src, remote, size, "", progress=False)
                        t_write = time.perf_counter() - t0
                    with open(local, "w+b") as dst:         # as `smblayer get` opens it
                        t0 = time.perf_counter()
                        download(tree, remote, dst, "", progress=False)
                        t_read = time.perf_counter() - t0
                    tree.remove(remote)
                    verify(name, local)
                    os.unlink(local)
                    return {"write": size / t_write / 1e6, "read": size / t_read / 1e6}
                return name, run

            def fileobj_contender(share: str):
                """The file-object API: 1 MiB f.write()/f.read() calls through
                tree.open (default buffering), from/to tmpfs."""
                tree = trees[share]
                name = f"tree.open/{share}"

                def run() -> dict:
                    remote = f"bench-io-fileobj-{uuid.uuid4().hex[:8]}.bin"
                    local = os.path.join(work, "fileobj.out")
                    with open(source, "rb") as src:
                        t0 = time.perf_counter()
                        with tree.open(remote, "wb") as f:
                            for block in iter(lambda: src.read(FILEOBJ_CALL), b""):
                                f.write(block)
                        t_write = time.perf_counter() - t0
                    with open(local, "wb") as dst:
                        t0 = time.perf_counter()
                        with tree.open(remote, "rb") as f:
                            for block in iter(lambda: f.read(FILEOBJ_CALL), b""):
                                dst.write(block)
                        t_read = time.perf_counter() - t0
                    tree.remove(remote)
                    verify(name, local)
                    os.unlink(local)
                    return {"write": size / t_write / 1e6, "read": size / t_read / 1e6}
                return name, run

            def smbclient_contender(share: str):
                extra = ["--client-protection=encrypt"] if share != srv.share else []
                name = f"smbclient/{share}"

                def run() -> dict:
                    remote = f"bench-io-smbclient-{uuid.uuid4().hex[:8]}.bin"
                    local = os.path.join(work, "smbclient.out")
                    t_setup = time_process(srv.smbclient_argv(share, [*extra, "-c", "exit"]))
                    t_write = time_process(srv.smbclient_argv(
                        share, [*extra, "-c", f"put {source} {remote}"]))
                    t_read = time_process(srv.smbclient_argv(
                        share, [*extra, "-c", f"get {remote} {local}"]))
                    time_process(srv.smbclient_argv(share, [*extra, "-c", f"del {remote}"]))
                    verify(name, local)
                    os.unlink(local)
                    return {"write": size / t_write / 1e6, "read": size / t_read / 1e6,
                            "write_net": size / max(t_write - t_setup, 1e-6) / 1e6,
                            "read_net": size / max(t_read - t_setup, 1e-6) / 1e6,
                            "setup_ms": t_setup * 1e3}
                return name, run

            def smbprotocol_contender(share: str):
                import smbclient as spc
                from smbclient import open_file
                encrypted = share != srv.share
                cache: dict = {}
                # Its default require_signing=True: with False, smbprotocol 1.17
                # sends an unsigned 3.1.1 TREE_CONNECT and Samba denies it.
                spc.register_session(srv.host, srv.username, srv.password, port=srv.port,
                                     encrypt=encrypted, connection_cache=cache)
                name = f"smbprotocol/{share}"

                def run() -> dict:
                    unc = rf"\\{srv.host}\{share}\bench-io-smbprotocol-{uuid.uuid4().hex[:8]}.bin"
                    local = os.path.join(work, "smbprotocol.out")
                    kw = dict(port=srv.port, connection_cache=cache)
                    with open(source, "rb") as src:
                        t0 = time.perf_counter()
                        with open_file(unc, "wb", **kw) as f:
                            for block in iter(lambda: src.read(CALL), b""):
                                f.write(block)
                        t_write = time.perf_counter() - t0
                    with open(local, "wb") as dst:
                        t0 = time.perf_counter()
                        with open_file(unc, "rb", **kw) as f:
                            for block in iter(lambda: f.read(CALL), b""):
                                dst.write(block)
                        t_read = time.perf_counter() - t0
                    spc.remove(unc, **kw)
                    verify(name, local)
                    os.unlink(local)
                    return {"write": size / t_write / 1e6, "read": size / t_read / 1e6}
                return name, run

            makers = [smblayer_contender, fileobj_contender, smbclient_contender]
            if not args.no_smbprotocol:
                try:
                    import smbclient  # noqa: F401  (smbprotocol's high-level API)
                    makers.append(smbprotocol_contender)
                except ImportError:
                    print("# smbprotocol not installed: skipped", file=sys.stderr)
            contenders = dict(make(share) for share in shares for make in makers)
            rounds = interleave(args.rounds, contenders)
            for tree in trees.values():
                tree.close()
    finally:
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)

    med = {name: {k: median([r[k] for r in runs]) for k in runs[0]}
           for name, runs in rounds.items()}
    print()
    print(f"bulk transfer of {size / 2**20:.0f} MiB, {args.rounds} interleaved rounds, "
          "MB/s (median)")
    rows = []
    for name, m in med.items():
        net_w = f"{m['write_net']:.0f}" if "write_net" in m else ""
        net_r = f"{m['read_net']:.0f}" if "read_net" in m else ""
        rows.append([name, f"{m['write']:.0f}", f"{m['read']:.0f}", net_w, net_r])
    print(table(rows, ["contender", "write", "read", "write net", "read net"]))
    print("(smbclient: raw = whole process; net = minus its `-c exit` process "
          f"time, {median([r['setup_ms'] for r in rounds[f'smbclient/{shares[0]}']]):.0f} ms)")
    ratios = {}
    for share in shares:
        sl = med[f"smblayer/{share}"]
        sc = med[f"smbclient/{share}"]
        fo = med[f"tree.open/{share}"]
        for op in ("write", "read"):
            ratios[f"{share} {op}: smblayer / smbclient raw"] = sl[op] / sc[op]
            ratios[f"{share} {op}: smblayer / smbclient net"] = sl[op] / sc[f"{op}_net"]
            ratios[f"{share} {op}: tree.open 1 MiB calls / smbclient raw"] = fo[op] / sc[op]
            sp = med.get(f"smbprotocol/{share}")
            if sp:
                ratios[f"{share} {op}: smblayer / smbprotocol"] = sl[op] / sp[op]
    width = max(map(len, ratios))
    for k, v in ratios.items():
        print(f"{k:<{width}} = {v:.2f}")
    if args.json:
        print(json.dumps({"size": size, "rounds": rounds, "median": med, "ratios": ratios},
                         indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
