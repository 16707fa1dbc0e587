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
"""
from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence

__all__ = ["PythonChild", "frozen", "server_pids"]


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
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"          # gone


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
