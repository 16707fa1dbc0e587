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

The process helpers the server fixtures (``samba.py``, ``addc.py``) share
live here too, Linux ``/proc`` based: ``find_binary``, ``tcp_connections``,
``socket_inodes``, ``local_ports_of``, ``proc_stat`` / ``proc_comm`` /
``proc_cmdline``, ``all_pids``, ``alive``, ``descendants`` (a process tree,
zombies left out), ``wait_exit_noreap`` (wait for a child without reaping
it, so its pid cannot be reused meanwhile), ``pdeathsig_argv`` (the
``setpriv --pdeathsig TERM`` prefix that stops a server when the thread that
started it dies) and ``free_port``.
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
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set

__all__ = ["PythonChild", "frozen", "server_pids", "find_binary", "BIN_DIRS", "SBIN_DIRS",
           "tcp_connections", "socket_inodes", "local_ports_of", "proc_stat", "proc_comm",
           "proc_cmdline", "all_pids", "alive", "descendants", "wait_exit_noreap",
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


_TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}


def _decode_addr(hexaddr: str) -> tuple:
    ip_hex, port_hex = hexaddr.split(":")
    port = int(port_hex, 16)
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        # /proc/net/tcp6 prints four host-order 32-bit words
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[len("::ffff:"):]
    return ip, port


def tcp_connections() -> List[dict]:
    """Parse /proc/net/tcp and /proc/net/tcp6.

    Returns dicts with ``local`` (ip, port), ``remote`` (ip, port), ``state``
    (e.g. "ESTABLISHED", "LISTEN") and ``inode`` (int).
    """
    result = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            try:
                local = _decode_addr(fields[1])
                remote = _decode_addr(fields[2])
                inode = int(fields[9])
            except (ValueError, OSError):
                continue
            result.append({
                "local": local,
                "remote": remote,
                "state": _TCP_STATES.get(fields[3].upper(), fields[3]),
                "inode": inode,
            })
    return result


def socket_inodes(pid: int) -> Set[int]:
    """Socket inodes held open by process ``pid`` (empty set if gone)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            try:
                inodes.add(int(target[8:-1]))
            except ValueError:
                pass
    return inodes


def local_ports_of(pid: int, remote_port: int,
                   remote_host: str = "127.0.0.1") -> List[int]:
    """Local ports of ESTABLISHED TCP connections that process ``pid`` has to
    ``remote_host:remote_port`` (e.g. to find an smbclient's client port)."""
    inodes = socket_inodes(pid)
    return sorted(
        c["local"][1] for c in tcp_connections()
        if c["inode"] in inodes and c["state"] == "ESTABLISHED"
        and c["remote"] == (remote_host, remote_port))


def proc_stat(pid: int) -> Optional[tuple]:
    """(state, ppid) of ``pid`` or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces/parentheses: split after the last ')'
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return rest[0].decode(), int(rest[1])
    except (IndexError, ValueError):
        return None


def proc_comm(pid: int) -> str:
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def proc_cmdline(pid: int) -> bytes:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def all_pids() -> List[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def descendants(root: int) -> List[int]:
    """Live (non-zombie) descendants of ``root``, breadth first."""
    children: Dict[int, List[int]] = {}
    states: Dict[int, str] = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is None:
            continue
        states[pid] = st[0]
        children.setdefault(st[1], []).append(pid)
    out = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop(0)
        if states.get(pid) not in ("Z", "X"):
            out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def wait_exit_noreap(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for our child ``pid`` to exit, leaving it
    unreaped (a zombie) so that its pid cannot be reused meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # already reaped
        if res is not None and res.si_pid == pid:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


_pdeathsig_prefix: Optional[List[str]] = None


def pdeathsig_argv() -> List[str]:
    """``setpriv --pdeathsig TERM`` if util-linux supports it, else [].

    It makes the kernel SIGTERM smbd when the thread that started it dies, so
    a test process killed by a timeout does not leave smbd running forever.
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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
