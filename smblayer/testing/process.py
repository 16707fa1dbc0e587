"""Bounded child processes and frozen servers, for tests of killability.

``PythonChild(args)`` runs ``python ARGS`` (e.g. ``["-c", code]`` or
``["-m", "smblayer", "get", ...]``) with this interpreter and this process's
``sys.path`` on PYTHONPATH; stdout lines are read by a thread so that a test
can wait for one with a deadline (``wait_line``), and ``wait_exit(timeout)``
returns the exit code or None if the child is still running.  Leaving the
``with`` block kills whatever is left.

``frozen(*pids)`` SIGSTOPs processes and always SIGCONTs them on exit;
``server_pids(server)`` lists a SambaServer's master smbd and the children
serving connections (freeze them all to get a server that accepts TCP
connections - the kernel completes the handshake - and never answers).

The launch helpers the server fixtures (``samba.py``, ``addc.py``) share
live here too: ``find_binary`` (PATH, then ``BIN_DIRS`` / ``SBIN_DIRS``),
``pdeathsig_argv`` (the ``setpriv --pdeathsig TERM`` prefix that stops a
server when the thread that started it dies) and ``free_port``.  Reading
``/proc`` (process trees, sockets, ports) is :mod:`smblayer.testing.procfs`.
"""
from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from .procfs import proc_stat

__all__ = ["PythonChild", "frozen", "server_pids", "find_binary", "BIN_DIRS", "SBIN_DIRS",
           "pdeathsig_argv", "free_port"]


class PythonChild:
    """``python ARGS`` in a subprocess with line-wise, bounded stdout reads."""

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None,
                 stdin: bool = True):
        full_env = dict(os.environ if env is None else env)
        paths = [p for p in sys.path if p]
        if full_env.get("PYTHONPATH"):
            paths.insert(0, full_env["PYTHONPATH"])
        full_env["PYTHONPATH"] = os.pathsep.join(paths)
        full_env["PYTHONUNBUFFERED"] = "1"
        self.args = list(args)
        self.proc = subprocess.Popen(
            [sys.executable, *self.args], env=full_env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stdout: List[str] = []
        self._stderr: List[bytes] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True, name="PythonChild-out"),
            threading.Thread(target=self._read_stderr, daemon=True, name="PythonChild-err"),
        ]
        for t in self._readers:
            t.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            self._stderr.append(raw)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def wait_line(self, text: str, timeout: float) -> str:
        """The first (unread) stdout line containing ``text``; AssertionError
        (with the child's stderr) if none comes within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
                ended = False
            else:
                ended = line is None
            if line is not None and text in line:
                return line
            if ended or time.monotonic() >= deadline:
                raise AssertionError(
                    f"no line with {text!r} from {self.args!r} within {timeout:g} s "
                    f"({'exited ' + str(self.proc.poll()) if ended else 'still running'}); "
                    f"stderr:\n{self.stderr[-4000:]}")

    def send_line(self, text: str) -> None:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> Optional[int]:
        """The exit code, or None if it is still running after ``timeout`` s."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for t in self._readers:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def __enter__(self) -> "PythonChild":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def _proc_state(pid: int) -> str:
    stat = proc_stat(pid)
    return stat[0] if stat is not None else "X"      # "X": gone


def _wait_stopped(pids: Sequence[int], timeout: float) -> None:
    """SIGSTOP takes effect asynchronously: wait (bounded) until the kernel
    shows every process stopped ("T") or gone."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while any(_proc_state(pid) not in ("T", "t", "X", "Z") for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {list(pids)} did not stop within {timeout:g} s")
        tick.wait(0.002)


@contextlib.contextmanager
def frozen(*pids: int) -> Iterator[None]:
    """SIGSTOP ``pids`` (returning once they are stopped); SIGCONT them when
    the block ends, however it ends."""
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        _wait_stopped(stopped, 5.0)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def server_pids(server) -> List[int]:
    """The master smbd of ``server`` (a SambaServer) and its connection children."""
    return [server.pid, *server.children()]


# ---------------------------------------------------------------------------
# locating binaries, /proc (Linux only), ports

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
BIN_DIRS = ("/usr/bin", "/usr/local/bin", "/bin")


def find_binary(name: str, extra_dirs: Iterable[str]) -> Optional[str]:
    path = shutil.which(name)
    if path:
        return path
    for d in extra_dirs:
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


_pdeathsig_prefix: Optional[List[str]] = None


def pdeathsig_argv() -> List[str]:
    """``setpriv --pdeathsig TERM`` if util-linux supports it, else [].

    It makes the kernel SIGTERM a server when the thread that started it
    dies, so a test process killed by a timeout does not leave it running.
    """
    global _pdeathsig_prefix
    if _pdeathsig_prefix is None:
        prefix: List[str] = []
        setpriv = find_binary("setpriv", BIN_DIRS + SBIN_DIRS)
        if setpriv is not None:
            try:
                ok = subprocess.run(
                    [setpriv, "--pdeathsig", "TERM", "true"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=10).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            if ok:
                prefix = [setpriv, "--pdeathsig", "TERM"]
        _pdeathsig_prefix = prefix
    return list(_pdeathsig_prefix)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (a race remains: retry on EADDRINUSE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
