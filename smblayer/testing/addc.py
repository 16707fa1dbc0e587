"""A private, throw-away Samba Active Directory domain controller for tests.

Kerberos needs a KDC, and a real one is the only honest test: this module
provisions a Samba AD DC in a temporary directory and runs ``samba`` bound to
127.0.0.1 with its own SMB, KDC and kpasswd ports.  Clients get a
``krb5.conf`` and a ticket cache in the same directory through
``KRB5_CONFIG`` and ``KRB5CCNAME`` (:meth:`SambaAdDc.environ`)::

    with SambaAdDc() as dc, dc.environ():
        dc.kinit()                       # alice's TGT into dc.ccache
        with fs.connect(dc.host, "share", port=dc.port,
                        auth_protocol="kerberos") as tree:
            tree.listdir("")

What a real DC does, and how the fixture copes:

* ``samba`` runs a winbindd that listens on the machine's default winbind
  socket (/run/samba/winbindd).  While it runs, a standalone smbd started on
  the same machine asks it about its local users and fails every logon.  The
  standalone fixtures (:mod:`smblayer.testing.samba`) therefore start smbd
  with ``_NO_WINBINDD=1``; on top of that, when the kernel lets us (root with
  CAP_SYS_ADMIN), the DC runs in a private mount namespace with a tmpfs over
  that socket directory, so nobody else on the machine can see its winbindd.
  (A private ``winbindd socket directory`` instead breaks Kerberos logons on
  Samba 4.17.)
* Only the services needed for SMB + Kerberos run (``s3fs, kdc, winbindd``):
  no LDAP, DNS, NBT or RPC endpoint mapper on fixed ports.  The KDC port is
  ``krb5 port``, so it is free too; still, keep to one DC per test session.
* The service principal is ``cifs/<host>``: the fixture adds
  ``cifs/127.0.0.1`` to the DC's account, so clients connect by address;
  ``cifs/dc1`` (the DC's name) works with ``smbclient -I 127.0.0.1``.
* Samba's KDC reads ``kdc:user ticket lifetime`` in whole hours and refuses
  service tickets for a TGT with 120 s or less left; a short-lived ticket is
  asked for by the client (:meth:`SambaAdDc.kinit` with ``lifetime``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

from .process import find_binary, free_port, pdeathsig_argv
from .procfs import descendants, wait_exit_noreap
from .samba import find_smbclient

__all__ = ["SambaAdDc", "find_samba", "find_samba_tool", "find_kinit", "provision_available",
           "DC_PACKAGES"]

#: Debian packages the DC fixture needs.
DC_PACKAGES = ("samba-ad-dc", "samba-ad-provision", "krb5-user")

_START_DEADLINE = 60.0
_STOP_GRACE = 5.0
_WINBINDD_DEFAULT_DIR = "/run/samba/winbindd"


def find_samba() -> Optional[str]:
    """Path of the AD DC's ``samba`` binary, or None."""
    return find_binary("samba", ("/usr/sbin", "/usr/local/sbin", "/sbin"))


def find_samba_tool() -> Optional[str]:
    return find_binary("samba-tool", ("/usr/bin", "/usr/local/bin"))


def find_kinit() -> Optional[str]:
    return find_binary("kinit", ("/usr/bin", "/usr/local/bin"))


def provision_available() -> bool:
    """samba-tool needs the provisioning data of samba-ad-provision."""
    return os.path.isdir("/usr/share/samba/setup")


_ns_ok: Optional[bool] = None
_ns_lock = threading.Lock()


def _can_isolate() -> bool:
    """True if ``unshare --mount`` and a tmpfs mount work here (root with
    CAP_SYS_ADMIN); checked once.  ``SMBLAYER_DC_ISOLATE=0`` turns the
    isolation off (to test what a container without CAP_SYS_ADMIN gets)."""
    global _ns_ok
    if os.environ.get("SMBLAYER_DC_ISOLATE", "1") == "0":
        return False
    with _ns_lock:
        if _ns_ok is None:
            unshare = find_binary("unshare", ("/usr/bin", "/bin"))
            ok = False
            if unshare is not None and os.geteuid() == 0:
                try:
                    os.makedirs(_WINBINDD_DEFAULT_DIR, mode=0o755, exist_ok=True)
                    ok = subprocess.run(
                        [unshare, "--mount", "--propagation", "private", "sh", "-c",
                         "mount -t tmpfs -o size=1m,mode=0755 smbl-winbindd "
                         + _WINBINDD_DEFAULT_DIR],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, timeout=10).returncode == 0
                except (OSError, subprocess.SubprocessError):
                    ok = False
            _ns_ok = ok
        return _ns_ok


class SambaAdDc:
    """A Samba AD DC on 127.0.0.1 with private ports, provisioned in a temp dir.

    Realm ``realm`` (default ``SMBL.TEST``), NetBIOS domain ``domain``
    (``SMBL``), DC name ``dc_name`` (``dc1``).  Users: ``Administrator``
    (``admin_password``) and ``username`` (``alice``) with ``password``.
    Shares: ``share`` (read/write), ``encrypted`` (``smb encrypt =
    required``), ``dfs`` (an ``msdfs root`` whose link ``data`` points to
    ``\\\\dc1.smbl.test\\share``) plus ``extra_shares``.  The domain-based
    namespace ``\\\\SMBL.TEST\\sysvol`` is served too.

    The constructor only prepares; :meth:`start` (or ``with``) provisions and
    runs it; :meth:`stop` stops it by its pid and removes the directory.
    """

    host = "127.0.0.1"

    def __init__(self, *, realm: str = "SMBL.TEST", domain: str = "SMBL",
                 dc_name: str = "dc1", username: str = "alice",
                 password: str = "smbl-Alice-Pass1",
                 admin_password: str = "smbl-Adm1n-Pass",
                 extra_global: Optional[Mapping[str, object]] = None,
                 extra_shares: Optional[Mapping[str, Mapping[str, object]]] = None,
                 log_level: int = 1, start_timeout: float = _START_DEADLINE) -> None:
        self.realm = realm.upper()
        self.domain = domain.upper()
        self.dc_name = dc_name.lower()
        self.username = username
        self.password = password
        self.admin_password = admin_password
        self.extra_global = dict(extra_global or {})
        self.extra_shares = {k: dict(v) for k, v in (extra_shares or {}).items()}
        self.log_level = int(log_level)
        self.start_timeout = float(start_timeout)
        self.tempdir: Optional[str] = None
        self.port: Optional[int] = None
        self.kdc_port: Optional[int] = None
        self.kpasswd_port: Optional[int] = None
        self.isolated = False            # private mount namespace for winbindd
        self.provision_seconds: Optional[float] = None
        self.start_seconds: Optional[float] = None
        self._proc: Optional[subprocess.Popen] = None
        self._stdout = None
        self._lock = threading.RLock()

    # -- paths and names -----------------------------------------------------

    def _path(self, *parts: str) -> str:
        if self.tempdir is None:
            raise RuntimeError("SambaAdDc has no temp dir (not started?)")
        return os.path.join(self.tempdir, *parts)

    @property
    def conf_path(self) -> str:
        return self._path("dc", "etc", "smb.conf")

    @property
    def krb5_conf(self) -> str:
        return self._path("krb5.conf")

    @property
    def ccache(self) -> str:
        """The default ticket cache (``FILE:...``) that :meth:`environ` sets."""
        return "FILE:" + self._path("ccache")

    @property
    def principal(self) -> str:
        return f"{self.username}@{self.realm}"

    @property
    def fqdn(self) -> str:
        return f"{self.dc_name}.{self.realm.lower()}"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def env(self) -> Dict[str, str]:
        """KRB5_CONFIG and KRB5CCNAME for a client of this DC."""
        return {"KRB5_CONFIG": self.krb5_conf, "KRB5CCNAME": self.ccache}

    def share_path(self, name: str = "share") -> str:
        return str(self._shares()[name]["path"])

    @contextlib.contextmanager
    def environ(self, **overrides: str) -> Iterator[Dict[str, str]]:
        """Set KRB5_CONFIG and KRB5CCNAME (and ``overrides``) in os.environ
        for the duration of the ``with`` block, then restore them."""
        new = dict(self.env, **overrides)
        saved = {k: os.environ.get(k) for k in new}
        os.environ.update(new)
        try:
            yield new
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- configuration ---------------------------------------------------------

    def _shares(self) -> Dict[str, Dict[str, object]]:
        shares: Dict[str, Dict[str, object]] = {
            "share": {"read only": "no"},
            "encrypted": {"read only": "no", "smb encrypt": "required"},
            "dfs": {"msdfs root": "yes", "read only": "no"},
        }
        shares.update({k: dict(v) for k, v in self.extra_shares.items()})
        for name, opts in shares.items():
            opts.setdefault("path", self._path("shares", name))
        return shares

    def _smb_conf(self) -> str:
        d = self._path("dc")
        opts: Dict[str, object] = {
            "netbios name": self.dc_name.upper(),
            "realm": self.realm,
            "workgroup": self.domain,
            "server role": "active directory domain controller",
            "server services": "s3fs, kdc, winbindd",
            "interfaces": "lo",
            "bind interfaces only": "yes",
            "disable netbios": "yes",
            "smb ports": self.port,
            "krb5 port": self.kdc_port,
            "kpasswd port": self.kpasswd_port,
            "private dir": f"{d}/private",
            "lock directory": d,
            "state directory": f"{d}/state",
            "cache directory": f"{d}/cache",
            "binddns dir": f"{d}/bind-dns",
            "pid directory": f"{d}/pid",
            "ncalrpc dir": f"{d}/ncalrpc",
            "log file": self._path("log", "log.%m"),
            "logging": "file",
            "max log size": 0,
            # auth_audit:3 logs every logon with its mechanism ("[SMB2,krb5]")
            "log level": f"{self.log_level} auth_audit:5",
            "server min protocol": "NT1",
            "ntlm auth": "mschapv2-and-ntlmv2-only",
            "load printers": "no",
            "printing": "bsd",
            "printcap name": "/dev/null",
            "disable spoolss": "yes",
            "rpc start on demand helpers": "no",
            "kernel oplocks": "no",
            "kernel share modes": "no",
            "host msdfs": "yes",
        }
        opts.update(self.extra_global)
        lines = ["# generated by smblayer.testing.addc", "[global]"]
        lines += [f"\t{k} = {v}" for k, v in opts.items() if v is not None]
        shares = dict(self._shares())
        # The provisioned shares: \\SMBL.TEST\sysvol is a domain-based namespace.
        shares["sysvol"] = {"path": f"{d}/state/sysvol", "read only": "no"}
        shares["netlogon"] = {"path": f"{d}/state/sysvol/{self.realm.lower()}/scripts",
                              "read only": "no"}
        for name, share in shares.items():
            lines.append(f"[{name}]")
            lines += [f"\t{k} = {v}" for k, v in share.items() if v is not None]
        return "\n".join(lines) + "\n"

    def _krb5_conf(self) -> str:
        realm = self.realm
        return (
            "[libdefaults]\n"
            f"\tdefault_realm = {realm}\n"
            "\tdns_lookup_realm = false\n"
            "\tdns_lookup_kdc = false\n"
            "\trdns = false\n"
            "\tdns_canonicalize_hostname = false\n"
            "\tudp_preference_limit = 1\n"
            "\tforwardable = true\n"
            "[realms]\n"
            f"\t{realm} = {{\n"
            f"\t\tkdc = {self.host}:{self.kdc_port}\n"
            f"\t\tkpasswd_server = {self.host}:{self.kpasswd_port}\n"
            "\t}\n"
            "[domain_realm]\n"
            f"\t{self.dc_name} = {realm}\n"
            f"\t.{realm.lower()} = {realm}\n"
            f"\t{self.host} = {realm}\n")

    def write_krb5_conf(self, path: str, kdc: Optional[str] = None) -> str:
        """Write a krb5.conf for this realm to ``path`` (``kdc`` overrides the
        KDC address, e.g. a dead port for an unreachable-KDC test)."""
        text = self._krb5_conf()
        if kdc is not None:
            text = text.replace(f"kdc = {self.host}:{self.kdc_port}", f"kdc = {kdc}")
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- tools -------------------------------------------------------------------

    def _tool_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        return env

    def samba_tool(self, args: Sequence[str], timeout: float = 120) -> str:
        """Run ``samba-tool ARGS -H sam.ldb`` on the DC's database; returns stdout."""
        tool = find_samba_tool()
        if tool is None:
            raise RuntimeError("samba-tool not found (install samba-ad-dc)")
        res = subprocess.run([tool, *args, "-s", self.conf_path,
                              "-H", self._path("dc", "private", "sam.ldb")],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=timeout, env=self._tool_env(), cwd=self.tempdir)
        if res.returncode != 0:
            raise RuntimeError(f"samba-tool {args[0]} {args[1] if len(args) > 1 else ''} "
                               f"failed (rc={res.returncode}): {res.stderr.strip()[-2000:]}")
        return res.stdout

    def kinit(self, principal: Optional[str] = None, password: Optional[str] = None,
              ccache: Optional[str] = None, lifetime: Optional[str] = None,
              timeout: float = 30) -> str:
        """Get a TGT with ``kinit`` (password on stdin) into ``ccache``
        (default :attr:`ccache`); ``lifetime`` e.g. ``"150s"``.  Returns the
        ccache name."""
        exe = find_kinit()
        if exe is None:
            raise RuntimeError("kinit not found (install krb5-user)")
        ccache = ccache or self.ccache
        principal = principal or self.principal
        if password is None:
            password = (self.admin_password if principal.lower().startswith("administrator")
                        else self.password)
        argv = [exe, "-c", ccache]
        if lifetime:
            argv += ["-l", lifetime]
        res = subprocess.run(argv + [principal], input=password + "\n", capture_output=True,
                             text=True, timeout=timeout, env=self._tool_env())
        if res.returncode != 0:
            raise RuntimeError(f"kinit {principal} failed (rc={res.returncode}): "
                               f"{res.stderr.strip()}")
        return ccache

    def smbclient_command(self, args: Sequence[str] = (), share: str = "share") -> List[str]:
        """argv for ``smbclient`` with Kerberos from the default ticket cache
        (``//dc1/share -I 127.0.0.1``; run it with :attr:`env`)."""
        exe = find_smbclient()
        if exe is None:
            raise RuntimeError("smbclient not found (install smbclient)")
        return [exe, f"//{self.dc_name}/{share}", "-I", self.host, "-p", str(self.port),
                "-s", self._path("client.conf"), "--use-kerberos=required", "-N", *args]

    def smbclient(self, args: Sequence[str] = (), share: str = "share",
                  timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.smbclient_command(args, share), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=self._tool_env(), cwd=self.tempdir)

    def smbstatus(self, *args: str, timeout: float = 30) -> str:
        """``smbstatus`` output for this DC (e.g. ``smbstatus("-b")``)."""
        exe = find_binary("smbstatus", ("/usr/bin", "/usr/sbin"))
        if exe is None:
            raise RuntimeError("smbstatus not found")
        res = subprocess.run([exe, "-s", self.conf_path, *args], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, errors="replace",
                             timeout=timeout, env=self._tool_env())
        return res.stdout + ("\n" + res.stderr if res.stderr else "")

    def auth_log(self) -> List[str]:
        """Samba's authorization audit lines, e.g. ``Successful AuthZ:
        [SMB2,krb5] user [SMBL]\\[alice] ... Remote host
        [ipv4:127.0.0.1:PORT]``: which mechanism each logon used."""
        lines: List[str] = []
        for name in sorted(os.listdir(self._path("log"))):
            path = self._path("log", name)
            if not os.path.isfile(path):
                continue
            with open(path, errors="replace") as f:
                lines += [line.strip() for line in f if "AuthZ: [" in line]
        return lines

    def logon_mechanism(self, client_port: int) -> Optional[str]:
        """``"SMB2,krb5"``-style protocol and mechanism of the last logon from
        127.0.0.1:``client_port`` (None if none was logged)."""
        found = None
        for line in self.auth_log():
            if f"Remote host [ipv4:{self.host}:{client_port}]" in line:
                found = line[line.index("[") + 1:line.index("]")]
        return found

    def session_status(self, client_port: int) -> Optional[dict]:
        """The ``smbstatus --json`` entry (dialect, signing, encryption) of
        the session from 127.0.0.1:``client_port``."""
        import json
        data = json.loads(self.smbstatus("--json").split("\n", 1)[0] or "{}")
        for entry in data.get("sessions", {}).values():
            if entry.get("hostname") == f"ipv4:{self.host}:{client_port}":
                return entry
        return None

    def log_tail(self, n: int = 60) -> str:
        out = []
        for name in ("samba.stdout", "log.samba", "log.smbd", "log.winbindd"):
            try:
                with open(self._path("log", name), errors="replace") as f:
                    out += [f"== {name}"] + f.read().splitlines()[-n:]
            except OSError:
                continue
        return "\n".join(out)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> "SambaAdDc":
        with self._lock:
            if self.running:
                return self
            samba, tool = find_samba(), find_samba_tool()
            if samba is None or tool is None or not provision_available():
                raise RuntimeError("Samba AD DC not installed (apt-get install "
                                   + " ".join(DC_PACKAGES) + ")")
            ok = False
            t0 = time.monotonic()
            try:
                self._provision(tool)
                self._spawn(samba)
                # A TGT for the test user in the default cache: proves the KDC works.
                self.kinit()
                ok = True
            finally:
                if not ok:
                    self.stop()
            self.start_seconds = time.monotonic() - t0
            return self

    def _provision(self, tool: str) -> None:
        t0 = time.monotonic()
        self.tempdir = tempfile.mkdtemp(prefix="smbl-addc-")
        os.chmod(self.tempdir, 0o755)
        for d in ("log", "shares"):
            os.makedirs(self._path(d))
        for name, share in self._shares().items():
            os.makedirs(str(share["path"]), exist_ok=True)
            os.chmod(str(share["path"]), 0o777)
        # A DFS link in the "dfs" share to "share", named by the DC's FQDN.
        os.symlink(f"msdfs:{self.fqdn}\\share", self._path("shares", "dfs", "data"))
        empty = self._path("empty.conf")
        open(empty, "w").close()
        with open(self._path("client.conf"), "w") as f:
            f.write(f"[global]\n\tworkgroup = {self.domain}\n\trealm = {self.realm}\n"
                    f"\tdisable netbios = yes\n\tlog file = {self._path('log', 'log.client')}\n"
                    f"\tcache directory = {self._path('client-cache')}\n"
                    f"\tstate directory = {self._path('client-cache')}\n"
                    f"\tlock directory = {self._path('client-cache')}\n")
        os.makedirs(self._path("client-cache"))
        res = subprocess.run(
            [tool, "domain", "provision", "-s", empty, "--server-role=dc",
             "--dns-backend=NONE", "--targetdir=" + self._path("dc"),
             "--realm=" + self.realm, "--domain=" + self.domain,
             "--host-name=" + self.dc_name, "--adminpass=" + self.admin_password,
             "--option=interfaces=lo", "--option=bind interfaces only=yes",
             "--option=log file=" + self._path("log", "provision.log")],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
            cwd=self.tempdir)
        if res.returncode != 0:
            raise RuntimeError(f"samba-tool domain provision failed (rc={res.returncode}): "
                               f"{res.stderr.strip()[-3000:]}")
        self.port = free_port(self.host)
        self.kdc_port = free_port(self.host)
        self.kpasswd_port = free_port(self.host)
        for d in ("pid", "ncalrpc"):
            os.makedirs(self._path("dc", d), exist_ok=True)
        with open(self.conf_path, "w") as f:
            f.write(self._smb_conf())
        with open(self.krb5_conf, "w") as f:
            f.write(self._krb5_conf())
        self.samba_tool(["spn", "add", f"cifs/{self.host}", self.dc_name.upper() + "$"])
        self.samba_tool(["user", "create", self.username, self.password])
        self.provision_seconds = time.monotonic() - t0

    def _spawn(self, samba: str) -> None:
        self._stdout = open(self._path("log", "samba.stdout"), "ab")
        argv = [samba, "-s", self.conf_path, "-i", "-M", "single", "-l", self._path("log"),
                "-d", str(self.log_level)]
        self.isolated = _can_isolate()
        if self.isolated:
            # Own mount namespace: a tmpfs over the default winbind socket
            # directory hides this DC's winbindd from the rest of the machine.
            # ``exec`` keeps the pid: the pid we stop is samba's.
            argv = [find_binary("unshare", ("/usr/bin", "/bin")) or "unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs -o size=1m,mode=0755 smbl-winbindd "$0" && exec "$@"',
                    _WINBINDD_DEFAULT_DIR, *argv]
        prefix = (pdeathsig_argv() if threading.current_thread() is threading.main_thread()
                  else [])
        self._proc = subprocess.Popen(prefix + argv, stdin=subprocess.DEVNULL,
                                      stdout=self._stdout, stderr=subprocess.STDOUT,
                                      cwd=self.tempdir, env=self._tool_env(), close_fds=True,
                                      start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        pending = [self.port, self.kdc_port]
        while pending:
            if self._proc.poll() is not None:
                raise RuntimeError(f"samba exited with status {self._proc.returncode} during "
                                   f"start-up:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"samba did not listen on {self.host}:{pending} within "
                                   f"{self.start_timeout:.0f}s:\n{self.log_tail()}")
            try:
                socket.create_connection((self.host, pending[0]), timeout=1).close()
                pending.pop(0)
            except OSError:
                time.sleep(0.05)

    def stop(self, remove: bool = True) -> None:
        """Stop samba by its pid (SIGTERM, grace, SIGKILL to its process group
        and leftover descendants); ``remove=True`` deletes the temp dir."""
        with self._lock:
            proc = self._proc
            if proc is not None:
                pid = proc.pid
                others = descendants(pid)
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                    if not wait_exit_noreap(pid, _STOP_GRACE):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        wait_exit_noreap(pid, _STOP_GRACE)
                    # Not reaped yet, so the group id cannot have been reused.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                for p in others:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(p, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(_STOP_GRACE)
                self._proc = None
            if self._stdout is not None:
                self._stdout.close()
                self._stdout = None
            if remove and self.tempdir is not None:
                shutil.rmtree(self.tempdir, ignore_errors=True)
                self.tempdir = None

    close = stop

    def __enter__(self) -> "SambaAdDc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"<SambaAdDc {self.realm} {self.host}:{self.port} kdc={self.kdc_port} "
                f"pid={self.pid}>")
