"""A private, throw-away Samba ``smbd`` for integration and fault tests.

Everything the server needs (smb.conf, passdb, tdb files, sockets, logs and the
share directories) lives in one temporary directory; nothing is written outside
it.  The server listens on 127.0.0.1 (and ::1) on a free high port only.

Typical use::

    with SambaServer() as srv:
        print(srv.host, srv.port, srv.username, srv.password)
        srv.smbclient(["-c", "ls"])

Gotchas with Samba 4.17 that shaped this module:

* ``smbd -l <dir>`` is passed so that smbd *and* every helper it spawns log
  into the temp dir (without it smbd opens ``/var/log/samba/log.smbd`` before
  it has read ``log file`` from smb.conf).
* ``rpc start on demand helpers = no`` by default: otherwise smbd spawns
  ``samba-dcerpcd`` on the first IPC$ named-pipe open; it daemonizes (its
  parent becomes init) and it probes every ``rpcd_*`` binary with
  ``--list-interfaces`` without ``-l``, which creates empty log files in
  /var/log/samba.  Consequence: DCE/RPC over IPC$ (e.g. ``smbclient -L``
  share enumeration via srvsvc) is not served.  Pass
  ``extra_global={"rpc start on demand helpers": "yes"}`` if a test needs it;
  :meth:`SambaServer.stop` kills those helpers too (they are found by the
  config path on their command line).
* ``smb encrypt = required`` on a share: an SMB 3.x client is told to encrypt
  by the share flags (Samba's smbclient then encrypts even when not asked to);
  an SMB 2.x client gets ``NT_STATUS_ACCESS_DENIED`` at TREE_CONNECT; an SMB1
  client gets the tree but every operation on it fails with
  ``NT_STATUS_ACCESS_DENIED``.
"""

from __future__ import annotations

import atexit
import getpass
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from typing import Dict, List, Mapping, Optional, Sequence, Union

from .chroot import SambaRoot
from .process import BIN_DIRS, SBIN_DIRS, find_binary, pdeathsig_argv
from .process import free_port as _free_port   # a module global: tests replace it
from .procfs import (alive as _alive, all_pids as _all_pids, descendants as _descendants,
                     local_ports_of, proc_cmdline as _proc_cmdline, proc_comm as _proc_comm,
                     proc_stat as _proc_stat, socket_inodes, tcp_connections,
                     wait_exit_noreap as _wait_exit_noreap)

__all__ = [
    "SambaServer",
    "find_smbd",
    "find_smbpasswd",
    "find_smbclient",
    "DEFAULT_PASSWORD",
    "DURABLE_OPTIONS",
    "tcp_connections",
    "socket_inodes",
    "local_ports_of",
]

DEFAULT_PASSWORD = "smbl-Pass-123"

# What Samba 4.17 needs to grant durable handles (``extra_global``): no kernel
# share modes, oplocks or POSIX locks (the defaults of SambaServer already).
# A durable open survives a network blip (the serving smbd disconnects it
# when its socket dies) but not the death of that smbd process.
# "aio write size = 0": Samba 4.17 records the file's mtime in the durable
# cookie when it disconnects the open, while threaded (aio) WRITEs of the
# dead connection may still land; the reclaim then finds a newer mtime and
# is refused ("stat_ex.st_ex_mtime differs").  Synchronous writes close that
# window, so a write-heavy reset is reclaimable.
DURABLE_OPTIONS = {
    "durable handles": "yes",
    "kernel share modes": "no",
    "kernel oplocks": "no",
    "posix locking": "no",
    "smb2 leases": "yes",
    "aio write size": "0",
}

# Names (``/proc/<pid>/comm``) of smbd's long-lived helper processes; they are
# children of the main smbd but do not serve a client connection.
_HELPER_COMMS = frozenset({"smbd-notifyd", "cleanupd", "smbd-cleanupd",
                           "smbd-scavenger", "lpqd", "smbd-bgqd", "samba-bgqd",
                           "samba-dcerpcd", "smbd-echo"})

_START_DEADLINE = 15.0
_STOP_GRACE = 5.0
_PORT_ATTEMPTS = 5


# ---------------------------------------------------------------------------
# locating the binaries


def find_smbd() -> Optional[str]:
    """Path of Samba's ``smbd`` (PATH, then /usr/sbin etc.), or None."""
    return find_binary("smbd", SBIN_DIRS)


def find_smbpasswd() -> Optional[str]:
    return find_binary("smbpasswd", BIN_DIRS + SBIN_DIRS)


def find_smbclient() -> Optional[str]:
    return find_binary("smbclient", BIN_DIRS + SBIN_DIRS)


def standalone_env() -> Dict[str, str]:
    """The environment for a standalone smbd (and its tools): ours plus
    ``_NO_WINBINDD=1``.  A Samba AD DC on the same machine (see
    :mod:`smblayer.testing.addc`) may run a winbindd on the default socket;
    without this variable a standalone smbd asks it about its local users
    and every logon fails with LOGON_FAILURE."""
    env = dict(os.environ)
    env["_NO_WINBINDD"] = "1"
    return env


# ---------------------------------------------------------------------------
# cleanup of servers still running when the interpreter exits

_live_servers: "weakref.WeakSet[SambaServer]" = weakref.WeakSet()


@atexit.register
def _stop_all_servers() -> None:  # pragma: no cover - exit path
    for srv in list(_live_servers):
        try:
            srv.stop()
        except Exception:
            pass


# ---------------------------------------------------------------------------


class SambaServer:
    """A private smbd on 127.0.0.1:<free port>.

    Shares: ``share`` (read/write), ``encrypted`` (read/write, ``smb encrypt =
    required``) and ``readonly`` (contains ``hello.txt``).  The Samba user is
    ``username`` (default ``root`` when running as root, else the login name)
    with password ``password`` (default :data:`DEFAULT_PASSWORD`).

    The constructor only prepares; :meth:`start` (or ``with``) runs smbd.
    """

    host = "127.0.0.1"

    def __init__(self, min_protocol: str = "NT1", max_protocol: str = "SMB3_11",
                 extra_global: Optional[Mapping[str, object]] = None,
                 log_level: int = 1, *,
                 username: Optional[str] = None,
                 password: str = DEFAULT_PASSWORD,
                 extra_shares: Optional[Mapping[str, Mapping[str, object]]] = None,
                 start_timeout: float = _START_DEADLINE,
                 root: Optional[str] = None) -> None:
        self.min_protocol = min_protocol
        self.max_protocol = max_protocol
        self.extra_global = dict(extra_global or {})
        self.extra_shares = {k: dict(v) for k, v in (extra_shares or {}).items()}
        self.log_level = int(log_level)
        if username is None:
            username = "root" if os.geteuid() == 0 else getpass.getuser()
        self.username = username
        self.password = password
        self.start_timeout = float(start_timeout)
        # Samba from a Debian root (smblayer.testing.chroot) instead of the host's
        self.root: Optional[SambaRoot] = SambaRoot(root) if root else None

        self.port: Optional[int] = None
        self.tempdir: Optional[str] = None
        self.start_seconds: Optional[float] = None  # how long start() took
        self.start_attempts = 0  # smbd launches in the last start() (races)
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.RLock()
        self._stdout_file = None

    # -- paths ---------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        if self.tempdir is None:
            raise RuntimeError("SambaServer has no temp dir (not started?)")
        return os.path.join(self.tempdir, *parts)

    @property
    def conf_path(self) -> str:
        return self._path("smb.conf")

    @property
    def client_conf_path(self) -> str:
        return self._path("client", "smb.conf")

    @property
    def auth_file(self) -> str:
        return self._path("client", "auth.txt")

    @property
    def log_path(self) -> str:
        return self._path("log", "log.smbd")

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def address(self) -> tuple:
        return (self.host, self.port)

    def share_path(self, name: str = "share") -> pathlib.Path:
        """Local directory behind share ``name``."""
        shares = self._shares()
        if name not in shares:
            raise KeyError("no share %r" % (name,))
        return pathlib.Path(str(shares[name]["path"]))

    def unc(self, share: str = "share") -> str:
        return "//%s/%s" % (self.host, share)

    # -- configuration -------------------------------------------------------

    def _global_options(self) -> Dict[str, object]:
        t = self.tempdir
        opts: Dict[str, object] = {
            "smb ports": self.port,
            "interfaces": "lo",
            "bind interfaces only": "yes",
            "disable netbios": "yes",
            "workgroup": "WORKGROUP",
            "netbios name": "SMBLTEST",
            "server string": "smblayer test server",
            "passdb backend": "tdbsam:%s/private/passdb.tdb" % t,
            "private dir": "%s/private" % t,
            "lock directory": "%s/lock" % t,
            "state directory": "%s/state" % t,
            "cache directory": "%s/cache" % t,
            "pid directory": "%s/pid" % t,
            "ncalrpc dir": "%s/ncalrpc" % t,
            "usershare path": "%s/usershares" % t,
            "log file": "%s/log/log.smbd" % t,
            "max log size": 0,
            "log level": self.log_level,
            "server role": "standalone server",
            "map to guest": "never",
            "load printers": "no",
            "printing": "bsd",
            "printcap name": "/dev/null",
            "disable spoolss": "yes",
            "rpc start on demand helpers": "no",
            "server signing": "auto",
            "server min protocol": self.min_protocol,
            "server max protocol": self.max_protocol,
            "ntlm auth": "ntlmv2-only",
            "kernel oplocks": "no",
            "kernel share modes": "no",
            "posix locking": "no",
            "strict sync": "no",
            "oplocks": "yes",
            "level2 oplocks": "yes",
            "smb2 leases": "yes",
        }
        opts.update(self.extra_global)
        return opts

    def _shares(self) -> Dict[str, Dict[str, object]]:
        shares: Dict[str, Dict[str, object]] = {
            "share": {"read only": "no", "browseable": "yes"},
            "encrypted": {"read only": "no", "browseable": "yes",
                          "smb encrypt": "required"},
            "readonly": {"read only": "yes", "browseable": "yes"},
        }
        for name, opts in self.extra_shares.items():
            shares[name] = dict(opts)
        for name, opts in shares.items():
            opts.setdefault("path", self._path("shares", name))
        return shares

    @staticmethod
    def _render(sections: Sequence[tuple]) -> str:
        out = ["# generated by smblayer.testing.samba"]
        for name, opts in sections:
            out.append("[%s]" % name)
            for k, v in opts.items():
                if v is None:
                    continue
                out.append("\t%s = %s" % (k, v))
            out.append("")
        return "\n".join(out)

    def _write_config(self) -> None:
        sections = [("global", self._global_options())]
        sections.extend(self._shares().items())
        with open(self.conf_path, "w") as f:
            f.write(self._render(sections))

        # smbclient gets its own config so it, too, writes only in the temp dir
        t = self.tempdir
        client = {
            "workgroup": "WORKGROUP",
            "disable netbios": "yes",
            "lock directory": "%s/client/lock" % t,
            "state directory": "%s/client/state" % t,
            "cache directory": "%s/client/cache" % t,
            "private dir": "%s/client/private" % t,
            "pid directory": "%s/client/pid" % t,
            "ncalrpc dir": "%s/client/ncalrpc" % t,
            "log file": "%s/log/log.smbclient" % t,
            "max log size": 0,
        }
        with open(self.client_conf_path, "w") as f:
            f.write(self._render([("global", client)]))
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("username = %s\npassword = %s\ndomain = WORKGROUP\n"
                    % (self.username, self.password))

    def _make_tree(self) -> None:
        self.tempdir = tempfile.mkdtemp(prefix="smbl-samba-")
        os.chmod(self.tempdir, 0o755)
        for d in ("private", "lock", "state", "cache", "pid", "ncalrpc", "log",
                  "usershares", "shares", "client", "client/lock",
                  "client/state", "client/cache", "client/private",
                  "client/pid", "client/ncalrpc"):
            os.makedirs(self._path(d), exist_ok=True)
        os.chmod(self._path("private"), 0o700)
        for name, opts in self._shares().items():
            path = str(opts["path"])
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)
        with open(self._path("shares", "readonly", "hello.txt"), "w") as f:
            f.write("hello from the readonly share\n")

    def _add_user(self) -> None:
        smbpasswd = self._program("smbpasswd", find_smbpasswd)
        pw = "%s\n%s\n" % (self.password, self.password)
        res = subprocess.run(
            self._in_root([smbpasswd, "-c", self.conf_path, "-s", "-a", self.username]),
            input=pw, capture_output=True, text=True, timeout=30,
            cwd=self.tempdir, env=standalone_env())
        if res.returncode != 0:
            raise RuntimeError("smbpasswd -a %s failed (rc=%d): %s %s" % (
                self.username, res.returncode, res.stdout.strip(),
                res.stderr.strip()))

    def _program(self, name: str, find) -> str:
        """Path of Samba program ``name``: in the root, else on this host."""
        if self.root is not None:
            return self.root.program(name)
        path = find()
        if path is None:
            raise RuntimeError("%s not found on PATH or in /usr/sbin, /usr/bin "
                               "(install samba)" % name)
        return path

    def _in_root(self, argv: List[str]) -> List[str]:
        return self.root.command(argv) if self.root is not None else argv

    def smbstatus(self, *args: str, timeout: float = 30) -> str:
        """``smbstatus`` of this server (the root's own with ``root=``)."""
        exe = self._program("smbstatus", lambda: find_binary("smbstatus", BIN_DIRS))
        res = subprocess.run(self._in_root([exe, "-s", self.conf_path] + list(args)),
                             capture_output=True, text=True, timeout=timeout,
                             env=standalone_env(), cwd=self.tempdir)
        if res.returncode != 0:
            raise RuntimeError("smbstatus failed (rc=%d): %s" % (res.returncode,
                                                                 res.stderr.strip()))
        return res.stdout

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "SambaServer":
        with self._lock:
            if self.running:
                return self
            smbd = self._program("smbd", find_smbd)
            t0 = time.monotonic()
            ok = False
            try:
                if self.tempdir is None:
                    self._make_tree()
                    self.port = _free_port(self.host)
                    self._write_config()
                    self._add_user()
                last_error = None
                for attempt in range(_PORT_ATTEMPTS):
                    self.start_attempts = attempt + 1
                    if attempt:
                        self.port = _free_port(self.host)
                        self._write_config()
                    try:
                        self._spawn(smbd)
                        ok = True
                        break
                    except _PortRace as exc:
                        last_error = exc
                        continue
                if not ok:
                    raise RuntimeError("smbd could not bind a free port after "
                                       "%d attempts: %s" % (_PORT_ATTEMPTS,
                                                            last_error))
            finally:
                if not ok:
                    self.stop()
            self.start_seconds = time.monotonic() - t0
            _live_servers.add(self)
            return self

    def _spawn(self, smbd: str) -> None:
        stdout_path = self._path("log", "smbd.stdout")
        self._stdout_file = open(stdout_path, "ab")
        try:
            log_size = os.path.getsize(self.log_path)
        except OSError:
            log_size = 0
        # The parent-death signal fires when the *thread* that forked exits,
        # so only use it from the main thread (pytest fixtures run there).
        prefix = (pdeathsig_argv()
                  if threading.current_thread() is threading.main_thread()
                  else [])
        self._proc = subprocess.Popen(
            prefix + self._in_root([smbd, "-s", self.conf_path, "-F", "--no-process-group",
                                    "-l", self._path("log"), "-d", str(self.log_level)]),
            stdin=subprocess.DEVNULL, stdout=self._stdout_file,
            stderr=subprocess.STDOUT, cwd=self.tempdir, close_fds=True,
            env=standalone_env(),
            # smbd's parent signals its whole process group (kill(0, SIGTERM))
            # when it shuts down; with --no-process-group it would hit us, so
            # it gets a session and process group of its own instead.
            start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            rc = self._proc.poll()
            if rc is not None:
                tail = self.log_tail(40, since=log_size)
                self._reap()
                if ("Address already in use" in tail
                        or "No sockets available" in tail):
                    raise _PortRace(tail)
                raise RuntimeError(
                    "smbd exited with status %s during start-up; log tail:\n%s"
                    % (rc, tail))
            owner = self._listener_owner()
            if owner == "ours":
                if self._probe_connect():
                    return
            elif owner == "other":
                # somebody else grabbed the port between our probe and smbd's
                # bind: this smbd will die or serve only ::1. Try another port.
                self._kill_tree()
                raise _PortRace("port %d taken by another process" % self.port)
            if time.monotonic() >= deadline:
                tail = self.log_tail(40, since=log_size)
                self._kill_tree()
                raise RuntimeError(
                    "smbd did not accept connections on %s:%s within %.0fs; "
                    "log tail:\n%s" % (self.host, self.port,
                                       self.start_timeout, tail))
            time.sleep(0.02)

    def _listener_owner(self) -> Optional[str]:
        """"ours" if our smbd listens on 127.0.0.1:port, "other" if another
        process does, None if nobody does (yet)."""
        listeners = [c for c in tcp_connections()
                     if c["state"] == "LISTEN"
                     and c["local"] == (self.host, self.port)]
        if not listeners:
            return None
        mine = socket_inodes(self._proc.pid)
        if any(c["inode"] in mine for c in listeners):
            return "ours"
        return "other"

    def _probe_connect(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _our_pids(self) -> List[int]:
        """Every live process belonging to this server: descendants of smbd
        plus anything whose command line names our private smb.conf (orphaned
        connection children, samba-dcerpcd and its rpcd_* workers)."""
        pids: List[int] = []
        if self._proc is not None:
            pids.extend(_descendants(self._proc.pid))
        if self.tempdir is not None:
            needle = os.fsencode(self.conf_path)
            me = os.getpid()
            for pid in _all_pids():
                if pid == me or pid in pids:
                    continue
                if self._proc is not None and pid == self._proc.pid:
                    continue
                if needle in _proc_cmdline(pid) and _alive(pid):
                    pids.append(pid)
        return pids

    def _kill_tree(self) -> None:
        proc = self._proc
        if proc is None:
            return
        others = self._our_pids()
        pid = proc.pid
        if proc.returncode is None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not _wait_exit_noreap(pid, _STOP_GRACE):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _wait_exit_noreap(pid, _STOP_GRACE)
            # smbd has exited but is not reaped yet, so its pid (== the
            # process group id we gave it) cannot have been reused: kill
            # whatever is left in its group.
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        # children were re-parented when smbd exited: find them again
        others = sorted(set(others) | set(self._our_pids()))
        for p in others:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + _STOP_GRACE
        while time.monotonic() < deadline and any(_alive(p) for p in others):
            time.sleep(0.01)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
        self._proc = None
        if self._stdout_file is not None:
            try:
                self._stdout_file.close()
            except OSError:
                pass
            self._stdout_file = None

    def stop(self, remove: bool = True) -> None:
        """Stop smbd (SIGTERM, 5 s grace, SIGKILL), kill every leftover child
        and helper, and (``remove=True``) delete the temp dir."""
        with self._lock:
            self._kill_tree()
            _live_servers.discard(self)
            if remove and self.tempdir is not None:
                shutil.rmtree(self.tempdir, ignore_errors=True)
                self.tempdir = None

    def restart(self) -> "SambaServer":
        """Stop smbd and start it again on the same port with the same files
        (e.g. after a fault test killed it)."""
        with self._lock:
            self._kill_tree()
            smbd = self._program("smbd", find_smbd)
            t0 = time.monotonic()
            self._spawn(smbd)
            self.start_seconds = time.monotonic() - t0
            _live_servers.add(self)
            return self

    close = stop

    def __enter__(self) -> "SambaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "<SambaServer %s:%s pid=%s %s..%s>" % (
            self.host, self.port, self.pid, self.min_protocol,
            self.max_protocol)

    # -- introspection -------------------------------------------------------

    def log_tail(self, n: int = 50, since: int = 0) -> str:
        """Last ``n`` lines of smbd's log (plus its stdout/stderr, if any)."""
        if self.tempdir is None:
            return ""
        chunks = []
        for path, offset in ((self._path("log", "smbd.stdout"), 0),
                             (self.log_path, since)):
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    size = f.tell()
                    start = max(offset, size - 256 * 1024)
                    f.seek(start)
                    data = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if data.strip():
                chunks.append(data)
        lines = "\n".join(chunks).splitlines()
        return "\n".join(lines[-n:]) if n > 0 else ""

    def children(self, include_helpers: bool = False) -> List[int]:
        """PIDs of the smbd processes serving client connections (smbd forks
        one per TCP connection).  ``include_helpers=True`` also returns the
        long-lived helpers (notifyd, cleanupd, ...) and their descendants."""
        if self._proc is None or self._proc.poll() is not None:
            return []
        pids = _descendants(self._proc.pid)
        if include_helpers:
            return pids
        parent = self._proc.pid
        children = []
        for pid in pids:
            stat = _proc_stat(pid)        # read once: the process may exit meanwhile
            if stat is not None and stat[1] == parent and _proc_comm(pid) not in _HELPER_COMMS:
                children.append(pid)
        return children

    def connection_child(self, local_port: int,
                         timeout: float = 2.0) -> Optional[int]:
        """PID of the smbd child serving the TCP connection whose client side
        is 127.0.0.1:``local_port``; None if not found within ``timeout``
        seconds (the child may not have been forked yet right after connect).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            pid = self._find_connection_child(local_port)
            if pid is not None or time.monotonic() >= deadline:
                return pid
            time.sleep(0.02)

    def _find_connection_child(self, local_port: int) -> Optional[int]:
        if self._proc is None or self.port is None:
            return None
        inodes = {
            c["inode"] for c in tcp_connections()
            if c["local"][1] == self.port and c["remote"][1] == local_port
            and c["remote"][0] in ("127.0.0.1", "::1")
            and c["state"] != "LISTEN" and c["inode"]
        }
        if not inodes:
            return None
        for pid in _descendants(self._proc.pid):
            if socket_inodes(pid) & inodes:
                return pid
        return None

    # -- Samba's C client ------------------------------------------------------

    def smbclient_command(self, args: Sequence[str] = (),
                          share: str = "share",
                          port: Optional[int] = None) -> List[str]:
        """argv for Samba's ``smbclient`` connected to ``share`` as our user.

        Credentials come from an authentication file in the temp dir (never
        the command line).  Pass e.g. ``["-m", "SMB3"]``,
        ``["--client-protection=encrypt"]`` (4.17's spelling of ``-e``) or
        ``["-m", "NT1", "--option=client min protocol=NT1"]`` in ``args``.
        ``port`` overrides the server's port (e.g. a FaultProxy in front).
        """
        exe = find_smbclient()
        if exe is None:
            raise RuntimeError("smbclient not found (install smbclient)")
        return [exe, "//%s/%s" % (self.host, share),
                "-p", str(port if port is not None else self.port),
                "-s", self.client_conf_path, "-A", self.auth_file] + list(args)

    def smbclient(self, args: Sequence[str] = (), share: str = "share",
                  input: Union[str, bytes, None] = None,
                  timeout: float = 60,
                  port: Optional[int] = None) -> subprocess.CompletedProcess:
        """Run Samba's ``smbclient``; returns the CompletedProcess with text
        ``stdout``/``stderr``.  Raises subprocess.TimeoutExpired on timeout."""
        if isinstance(input, bytes):
            input = input.decode("utf-8", "replace")
        return subprocess.run(
            self.smbclient_command(args, share, port), input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True, text=True, errors="replace",
            timeout=timeout, cwd=self.tempdir)

    def smbclient_popen(self, args: Sequence[str] = (), share: str = "share",
                        port: Optional[int] = None,
                        **kwargs) -> subprocess.Popen:
        """Start an interactive ``smbclient`` (stdin/stdout pipes by default);
        the caller must terminate and wait for it."""
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        kwargs.setdefault("cwd", self.tempdir)
        return subprocess.Popen(self.smbclient_command(args, share, port),
                                **kwargs)


class _PortRace(Exception):
    pass
