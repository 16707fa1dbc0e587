"""Shared helpers for the tools/bench_*.py benchmarks.

Each benchmark either starts its own private Samba (``SambaServer``) or uses
``--server //host:port/share`` with ``SMB_USER``/``SMB_PASSWORD`` from the
environment; contenders run interleaved in one process, round after round,
so that machine noise hits them all alike.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from smblayer.cli import parse_url  # noqa: E402
from smblayer.testing.samba import SambaServer, find_smbclient  # noqa: E402


@dataclass
class Server:
    """Where to benchmark: a private Samba (``samba`` set) or a given one."""

    host: str
    port: int
    share: str
    username: str
    password: str
    samba: Optional[SambaServer] = None
    _authfile: Optional[str] = None

    @property
    def url(self) -> str:
        return f"//{self.host}:{self.port}/{self.share}"

    def authfile(self) -> str:
        """An smbclient ``-A`` credentials file (0600, removed at exit)."""
        if self.samba is not None:
            return self.samba.auth_file
        if self._authfile is None:
            fd, path = tempfile.mkstemp(prefix="smbl-bench-auth-")
            with os.fdopen(fd, "w") as f:
                f.write(f"username = {self.username}\npassword = {self.password}\n")
            self._authfile = path
        return self._authfile

    def smbclient_argv(self, share: Optional[str] = None, args: Sequence[str] = ()) -> List[str]:
        """argv for Samba's C ``smbclient`` on ``share`` with our credentials."""
        share = share or self.share
        if self.samba is not None:
            return self.samba.smbclient_command(list(args), share=share)
        exe = find_smbclient()
        if exe is None:
            raise RuntimeError("smbclient not found")
        return [exe, f"//{self.host}/{share}", "-p", str(self.port), "-A", self.authfile(),
                *args]

    def cleanup(self) -> None:
        if self._authfile:
            with contextlib.suppress(OSError):
                os.unlink(self._authfile)


def add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="//host:port/share",
                        help="benchmark this server (credentials from SMB_USER/SMB_PASSWORD) "
                             "instead of a private Samba")


@contextlib.contextmanager
def server_from_args(args, **samba_kwargs) -> Iterator[Server]:
    """The --server given, or a private Samba started for the run."""
    if args.server:
        url = parse_url(args.server)
        user, password = os.environ.get("SMB_USER"), os.environ.get("SMB_PASSWORD")
        if not user or password is None:
            sys.exit("--server needs SMB_USER and SMB_PASSWORD in the environment")
        server = Server(url.host, url.port, url.share, user, password)
        try:
            yield server
        finally:
            server.cleanup()
        return
    with SambaServer(**samba_kwargs) as samba:
        print(f"# private Samba on 127.0.0.1:{samba.port} (smbd in {samba.tempdir})")
        yield Server(samba.host, samba.port, "share", samba.username, samba.password, samba)


def _fmt(value) -> str:
    if isinstance(value, dict):
        return "  ".join(f"{k} {v:.2f}" for k, v in value.items())
    return f"{value:.2f}"


def interleave(rounds: int, contenders: Dict[str, Callable[[], object]],
               progress: bool = True) -> Dict[str, list]:
    """Run every contender once per round, rotating the order each round;
    return name -> the values they returned, one per round."""
    names = list(contenders)
    results: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            value = contenders[name]()
            results[name].append(value)
            if progress:
                print(f"#   round {r + 1}/{rounds} {name}: {_fmt(value)}", file=sys.stderr,
                      flush=True)
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A left-aligned text table."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def time_process(argv: Sequence[str], env: Optional[dict] = None, cwd: Optional[str] = None,
                 check: bool = True) -> float:
    """Wall time of one subprocess run (seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, cwd=cwd)
    elapsed = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): "
                           f"{proc.stdout.decode(errors='replace')[-500:]}")
    return elapsed


def shm_dir() -> str:
    """A tmpfs directory for local benchmark files (the disk is not measured)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
        else tempfile.gettempdir()
