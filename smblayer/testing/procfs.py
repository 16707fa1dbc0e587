"""Reading Linux /proc: TCP sockets, process states, parents and command
lines; used by the private servers to find their own processes (a smbd
forks one child per connection and leaves helpers behind) and the
connections of a client under test.  Every function returns an empty
result, never raises, for a process that is gone.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Dict, List, Optional, Set

__all__ = ["tcp_connections", "socket_inodes", "local_ports_of", "proc_stat", "proc_comm",
           "proc_cmdline", "all_pids", "alive", "descendants", "wait_exit_noreap"]

_TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}


def decode_addr(hexaddr: str) -> tuple:
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
                local = decode_addr(fields[1])
                remote = decode_addr(fields[2])
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
