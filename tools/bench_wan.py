#!/usr/bin/env python3
"""The WAN profile: smblayer vs Samba's C smbclient vs smbprotocol through a
delay proxy with a fixed one-way delay in both directions (no loss).

    python3 tools/bench_wan.py [--rtt 10] [--rtt 40] [--size 256M] [--files 1000]
                               [--entries 2000] [--rounds 3] [--only get,put,...]

A private Samba is started; ``smblayer.testing.proxy.FaultProxy`` sits in
front of it with ``delay(rtt / 2)`` each way, so every round trip costs
``rtt`` milliseconds on top of loopback.  Each scenario runs its contenders
interleaved, round after round, on the same proxy:

* ``connect``: in-process connect (TCP, NEGOTIATE, SESSION_SETUP, TREE_CONNECT)
  with ``fs.connect`` and smbprotocol, against ``smbclient -c exit`` net of
  its process start (``smbclient --version``: exec and libraries).
* ``ls1``: a one-shot ``smblayer ls //h/share/one-file`` process vs
  ``smbclient -c "ls one-file"``.
* ``get`` / ``put``: ``--size`` bytes, by the CLI of each (whole processes),
  and in-process by the public file API (``tree.open`` + 1 MiB
  ``readinto``/``write``) and smbprotocol's ``smbclient.open_file``.
* ``ls``: a directory of ``--entries`` files listed by each CLI.
* ``rget`` / ``rput``: ``--files`` files of 4 KiB, ``get -r`` / ``put -r``
  vs smbclient ``recurse; prompt; mget|mput *``.
* ``--baseline DIR``: the CLI scenarios also run the CLI of another source
  tree (``smblayer CLI (base)``), interleaved with the rest: before/after
  figures from one run.
* ``cat``: fsspec ``cat`` of 100 files of 1 KiB given as one list, in-process:
  ``fsspec.filesystem("smblayer")`` vs fsspec's own ``smb://`` (smbprotocol);
  the ratio here is smblayer's time over smbprotocol's (connected before).

Local files live on tmpfs; the figure is the median wall time; the ratio is
smblayer's time over smbclient's (below 1 is faster).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _benchlib import interleave, median, shm_dir, table, time_process  # noqa: E402

from smblayer import fs  # noqa: E402
from smblayer.testing.proxy import FaultProxy  # noqa: E402
from smblayer.testing.samba import SambaServer  # noqa: E402

SCENARIOS = ("connect", "ls1", "get", "put", "ls", "rget", "rput", "cat")
_IO = 1 << 20


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class Bench:
    """One Samba, one delay proxy, the contenders' command lines."""

    def __init__(self, samba: SambaServer, proxy: FaultProxy, work: str,
                 baseline: str = None):
        self.samba, self.proxy, self.work = samba, proxy, work
        self.root = samba.share_path("share")
        self.host, self.port = proxy.host, proxy.port
        # Bytecode cached as for an installed package (a session may set
        # PYTHONDONTWRITEBYTECODE; compiling every module is not a cold start).
        self.env = dict(os.environ, SMB_USER=samba.username, SMB_PASSWORD=samba.password,
                        PYTHONPATH=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
                        PYTHONPYCACHEPREFIX=os.path.join(work, "pycache"))
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        # --baseline: the same CLI from another source tree (say, main before
        # a change), a contender of its own in the CLI scenarios
        self.base_env = None
        if baseline:
            self.base_env = dict(self.env, PYTHONPATH=os.path.abspath(baseline),
                                 PYTHONPYCACHEPREFIX=os.path.join(work, "pycache-base"))
        for env in filter(None, (self.env, self.base_env)):
            subprocess.run([sys.executable, "-c", "import compileall, smblayer; "
                            "compileall.compile_dir(smblayer.__path__[0], quiet=1)"],
                           env=env, check=True)

    def url(self, path: str = "") -> str:
        return f"//{self.host}:{self.port}/share/{path}".rstrip("/")

    def smblayer(self, *args: str, base: bool = False) -> float:
        return time_process([sys.executable, "-m", "smblayer", *args],
                            env=self.base_env if base else self.env, cwd=self.work)

    def with_base(self, contenders: dict, name: str, run: Callable[..., float]) -> dict:
        """``contenders`` with ``name`` (``run()``) and, given --baseline,
        ``name + " (base)"`` (``run(base=True)``) right after it."""
        out = {}
        for key, fn in contenders.items():
            out[key] = fn
            if key == name and self.base_env is not None:
                out[f"{name} (base)"] = lambda: run(base=True)
        return out

    def smbclient(self, command: str, *extra: str, cwd: str = None) -> float:
        argv = self.samba.smbclient_command([*extra, "-c", command], port=self.port)
        return time_process(argv, cwd=cwd or self.work)

    def connect(self):
        return fs.connect(self.host, "share", self.samba.username, self.samba.password,
                          port=self.port)


def _smbprotocol(bench: Bench):
    """smbprotocol's high-level module, or None where it is not installed."""
    try:
        import smbclient  # type: ignore
    except ImportError:
        return None
    smbclient.ClientConfig(username=bench.samba.username, password=bench.samba.password)
    return smbclient


def scenario_connect(b: Bench, rounds: int) -> List[list]:
    count = 5

    def ours() -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            b.connect().close()
        return (time.perf_counter() - t0) / count

    def theirs() -> float:
        return median([b.smbclient("exit") for _ in range(count)])

    def theirs_base() -> float:
        return median([time_process(b.samba.smbclient_command(["--version"]), check=False)
                       for _ in range(count)])

    contenders: Dict[str, Callable[[], float]] = {"smblayer": ours, "smbclient": theirs,
                                                  "smbclient --version": theirs_base}
    spc = _smbprotocol(b)
    if spc is not None:
        def protocol() -> float:
            from smbprotocol.connection import Connection
            from smbprotocol.session import Session
            from smbprotocol.tree import TreeConnect
            t0 = time.perf_counter()
            for _ in range(count):
                conn = Connection(uuid.uuid4(), b.host, b.port)
                conn.connect()
                sess = Session(conn, b.samba.username, b.samba.password, require_encryption=False)
                sess.connect()
                tree = TreeConnect(sess, rf"\\{b.host}\share")
                tree.connect()
                tree.disconnect()
                sess.disconnect()
                conn.disconnect()
            return (time.perf_counter() - t0) / count
        contenders["smbprotocol"] = protocol
    res = interleave(rounds, contenders)
    net = median(res["smbclient"]) - median(res["smbclient --version"])
    rows = [["connect (in-process)", "smblayer", f"{median(res['smblayer']) * 1e3:.1f} ms",
             f"{median(res['smblayer']) / net:.2f}x"],
            ["connect", "smbclient net of start", f"{net * 1e3:.1f} ms", "1.00x"]]
    if "smbprotocol" in res:
        rows.append(["connect (in-process)", "smbprotocol",
                     f"{median(res['smbprotocol']) * 1e3:.1f} ms",
                     f"{median(res['smbprotocol']) / net:.2f}x"])
    return rows


def _pair(name: str, res: Dict[str, list], base: str = "smbclient") -> List[list]:
    ref = median(res[base])
    return [[name, who, f"{median(v):.3f} s", f"{median(v) / ref:.2f}x"]
            for who, v in res.items()]


def scenario_ls1(b: Bench, rounds: int) -> List[list]:
    (b.root / "one-file").write_bytes(b"x" * 100)
    def ours(base: bool = False) -> float:
        return b.smblayer("ls", b.url("one-file"), base=base)
    res = interleave(rounds, b.with_base({"smblayer": ours,
                                          "smbclient": lambda: b.smbclient("ls one-file")},
                                         "smblayer", ours))
    return _pair("ls one file (CLI)", res)


def scenario_get(b: Bench, rounds: int, size: int) -> List[list]:
    (b.root / "big.bin").write_bytes(os.urandom(1 << 20) * (size >> 20))
    dest = os.path.join(shm_dir(), f"smbl-wan-{os.getpid()}.bin")

    def api() -> float:
        t0 = time.perf_counter()
        with b.connect() as tree, tree.open("big.bin", "rb", buffering=0) as f:
            buf = bytearray(_IO)
            while f.readinto(buf):
                pass
        return time.perf_counter() - t0

    def cli(base: bool = False) -> float:
        return b.smblayer("get", b.url("big.bin"), dest, base=base)
    contenders = b.with_base({"smblayer CLI": cli,
                              "smbclient": lambda: b.smbclient(f"get big.bin {dest}"),
                              "smblayer API": api}, "smblayer CLI", cli)
    spc = _smbprotocol(b)
    if spc is not None:
        def protocol() -> float:
            t0 = time.perf_counter()
            with spc.open_file(rf"\\{b.host}\share\big.bin", "rb", port=b.port) as f:
                while f.read(_IO):
                    pass
            spc.reset_connection_cache()
            return time.perf_counter() - t0
        contenders["smbprotocol API"] = protocol
    try:
        return _pair(f"get {size >> 20} MiB", interleave(rounds, contenders))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(dest)


def scenario_put(b: Bench, rounds: int, size: int) -> List[list]:
    src = os.path.join(shm_dir(), f"smbl-wan-src-{os.getpid()}.bin")
    chunk = os.urandom(_IO)
    with open(src, "wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)

    def api() -> float:
        t0 = time.perf_counter()
        with b.connect() as tree, tree.open("up-api.bin", "wb") as f:
            for _ in range(size >> 20):
                f.write(chunk)
        return time.perf_counter() - t0

    def cli(base: bool = False) -> float:
        return b.smblayer("put", src, b.url("up-cli.bin"), base=base)
    contenders = b.with_base({"smblayer CLI": cli,
                              "smbclient": lambda: b.smbclient(f"put {src} up-c.bin"),
                              "smblayer API": api}, "smblayer CLI", cli)
    spc = _smbprotocol(b)
    if spc is not None:
        def protocol() -> float:
            t0 = time.perf_counter()
            with spc.open_file(rf"\\{b.host}\share\up-p.bin", "wb", port=b.port) as f:
                for _ in range(size >> 20):
                    f.write(chunk)
            spc.reset_connection_cache()
            return time.perf_counter() - t0
        contenders["smbprotocol API"] = protocol
    try:
        return _pair(f"put {size >> 20} MiB", interleave(rounds, contenders))
    finally:
        os.unlink(src)


def scenario_ls(b: Bench, rounds: int, entries: int) -> List[list]:
    d = b.root / "many"
    d.mkdir(exist_ok=True)
    for i in range(entries):
        (d / f"entry-{i:05d}.txt").write_bytes(b"")
    def ours(base: bool = False) -> float:
        return b.smblayer("ls", b.url("many/"), base=base)
    res = interleave(rounds, b.with_base({"smblayer": ours,
                                          "smbclient": lambda: b.smbclient("ls many/*")},
                                         "smblayer", ours))
    return _pair(f"ls {entries} entries (CLI)", res)


def _small_tree(root: str, files: int) -> None:
    data = os.urandom(4096)
    for i in range(files):
        p = os.path.join(root, f"d{i % 10:02d}", f"f{i:05d}.bin")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)


def scenario_rget(b: Bench, rounds: int, files: int) -> List[list]:
    _small_tree(str(b.root / "small"), files)
    base = tempfile.mkdtemp(prefix="smbl-wan-rget-", dir=shm_dir())

    def fresh() -> str:
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        return base

    def ours(base: bool = False) -> float:
        dest = fresh()
        return b.smblayer("get", "-r", b.url("small"), os.path.join(dest, "small"), base=base)

    def theirs() -> float:
        dest = fresh()
        return b.smbclient("recurse; prompt; mget small", cwd=dest)

    try:
        return _pair(f"get -r {files} x 4 KiB", interleave(rounds, b.with_base(
            {"smblayer": ours, "smbclient": theirs}, "smblayer", ours)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def scenario_rput(b: Bench, rounds: int, files: int) -> List[list]:
    src = tempfile.mkdtemp(prefix="smbl-wan-rput-", dir=shm_dir())
    _small_tree(os.path.join(src, "up"), files)

    def clean(name: str) -> None:
        shutil.rmtree(b.root / name, ignore_errors=True)

    def ours(base: bool = False) -> float:
        clean("up-l")
        return b.smblayer("put", "-r", os.path.join(src, "up"), b.url("up-l"), base=base)

    def theirs() -> float:
        clean("up")
        (b.root / "up").mkdir()
        return b.smbclient("recurse; prompt; mput up", cwd=src)

    try:
        return _pair(f"put -r {files} x 4 KiB", interleave(rounds, b.with_base(
            {"smblayer": ours, "smbclient": theirs}, "smblayer", ours)))
    finally:
        shutil.rmtree(src, ignore_errors=True)


def scenario_cat(b: Bench, rounds: int, files: int = 100) -> List[list]:
    try:
        import fsspec
        from fsspec.implementations.smb import SMBFileSystem as FsspecSMB
    except ImportError:
        return [["fsspec cat", "skipped", "fsspec or smbprotocol not installed", ""]]
    folder = b.root / "cat"
    folder.mkdir(exist_ok=True)
    for i in range(files):
        (folder / f"c{i:04d}").write_bytes(os.urandom(1024))
    creds = {"username": b.samba.username, "password": b.samba.password}
    ours = fsspec.filesystem("smblayer", host=b.host, port=b.port, skip_instance_cache=True,
                             **creds)
    theirs = FsspecSMB(host=b.host, port=b.port, **creds)
    paths = [f"share/cat/c{i:04d}" for i in range(files)]

    def timed(fs, names) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            out = fs.cat(names)
            elapsed = time.perf_counter() - t0
            assert len(out) == files and all(len(v) == 1024 for v in out.values())
            return elapsed
        return run
    contenders = {"smblayer fsspec": timed(ours, paths),
                  "smbprotocol fsspec": timed(theirs, ["/" + p for p in paths])}
    for run in contenders.values():
        run()                                   # warm-up: connect
    return _pair(f"fsspec cat {files} x 1 KiB", interleave(rounds, contenders),
                 base="smbprotocol fsspec")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rtt", type=float, action="append", help="round-trip ms (repeatable)")
    p.add_argument("--size", default="256M")
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--entries", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default=",".join(SCENARIOS))
    p.add_argument("--baseline", metavar="DIR",
                   help="also run the CLI of the smblayer source tree in DIR (e.g. an "
                        "export of main before a change), interleaved: before/after")
    args = p.parse_args()
    only = [s for s in args.only.split(",") if s]
    for s in only:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r} (one of {', '.join(SCENARIOS)})")
    size = parse_size(args.size)
    rows: List[list] = []
    with SambaServer() as samba:
        work = tempfile.mkdtemp(prefix="smbl-wan-", dir=shm_dir())
        try:
            for rtt in args.rtt or [10.0]:
                with FaultProxy(samba.host, samba.port) as proxy:
                    proxy.delay(rtt / 2000.0)
                    b = Bench(samba, proxy, work, args.baseline)
                    print(f"# RTT {rtt:g} ms through 127.0.0.1:{proxy.port}", file=sys.stderr)
                    for s in only:
                        fn = globals()[f"scenario_{s}"]
                        extra = {"get": (size,), "put": (size,), "ls": (args.entries,),
                                 "rget": (args.files,), "rput": (args.files,)}.get(s, ())
                        for row in fn(b, args.rounds, *extra):
                            rows.append([f"{rtt:g} ms", *row])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows, ["RTT", "what", "who", "median", "vs smbclient"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
