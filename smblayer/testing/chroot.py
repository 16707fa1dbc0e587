"""Samba from a Debian root: a second, newer test server (Samba 4.22 from
Debian 13) next to the machine's own (Debian 12's 4.17).

Theory of operation
-------------------
``tools/make_samba_root.sh`` builds the root once with debootstrap
(``--variant=minbase --include=samba,smbclient trixie``) into a cache
directory, :func:`default_root` (``$SMBLAYER_SAMBA_ROOT``, else
``~/.cache/smblayer/debian13-root``), and marks it complete.

Every Samba program of a :class:`SambaRoot` (smbd, smbpasswd, smbstatus,
smbclient) runs through :meth:`SambaRoot.command`: ``unshare --mount``
gives the process a mount namespace of its own (propagation ``slave``: the
host's mounts may reach it, its mounts never reach the host), in which
``/tmp``, ``/dev`` and ``/proc`` are mounted into the root before
``chroot``.  So a server's temp dir has the same path inside and outside,
every mount under /tmp that exists when the program starts (a tmpfs for a
disk-full test) is seen inside (``--rbind``), and nothing is left mounted
on the host when the last process of the namespace exits: removing the
cache directory can never reach into /tmp.  ``unshare``, ``sh`` and
``chroot`` each exec the next, so the pid Popen returns is smbd's own and
the server is stopped by pid as before.

The root gets an ``/etc/hosts`` naming localhost and this machine's host
name (:meth:`SambaRoot.command` writes it when it is missing or names
another host): debootstrap leaves none, and smbd then resolves its own
name through DNS, which stalled every few connections for the resolver's
5 s timeout.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from typing import List, Optional, Sequence

__all__ = ["SambaRoot", "default_root", "root_problem", "MAKE_ROOT_HINT"]

#: Marker the build tool writes last: a root without it is half built.
COMPLETE_MARKER = ".smblayer-complete"

MAKE_ROOT_HINT = "build it with tools/make_samba_root.sh (README's set-up command)"

# Where each program lives inside the root.
_PROGRAMS = {"smbd": "/usr/sbin/smbd", "smbpasswd": "/usr/bin/smbpasswd",
             "smbstatus": "/usr/bin/smbstatus", "smbclient": "/usr/bin/smbclient",
             "testparm": "/usr/bin/testparm"}

# $1 is the root, the rest the program and its arguments.
_ENTER = ('set -e; r="$1"; shift; '
          'mount --rbind /tmp "$r/tmp"; mount --rbind /dev "$r/dev"; '
          'mount -t proc proc "$r/proc"; exec chroot "$r" "$@"')


def default_root() -> str:
    """The cache directory of the Debian 13 root (it may not exist yet)."""
    env = os.environ.get("SMBLAYER_SAMBA_ROOT")
    if env:
        return env
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "smblayer", "debian13-root")


def root_problem(root: Optional[str] = None) -> Optional[str]:
    """Why Samba cannot be started from ``root`` (default :func:`default_root`),
    naming the missing piece; None when it can."""
    root = root or default_root()
    if os.geteuid() != 0:
        return "starting Samba from a root (chroot, mount namespace) needs root"
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            return "%s is not installed (util-linux/coreutils)" % tool
    if not os.path.isdir(root):
        return "no Samba 4.22 root at %s: %s" % (root, MAKE_ROOT_HINT)
    if not os.path.exists(os.path.join(root, COMPLETE_MARKER)):
        return "the Samba root at %s is incomplete: %s" % (root, MAKE_ROOT_HINT)
    if not os.path.exists(root + _PROGRAMS["smbd"]):
        return "the Samba root at %s has no smbd: %s" % (root, MAKE_ROOT_HINT)
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or os.path.join("/usr/bin", name)


class SambaRoot:
    """A Debian root holding a Samba installation; :meth:`command` turns a
    program name and arguments into an argv that runs it inside."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._version: Optional[str] = None
        self._hosts_ok = False

    def _ensure_hosts(self) -> None:
        """An /etc/hosts inside the root for localhost and this host name."""
        if self._hosts_ok:
            return
        name = socket.gethostname()
        text = (f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n"
                "::1\tlocalhost ip6-localhost ip6-loopback\n")
        path = os.path.join(self.path, "etc", "hosts")
        try:
            with open(path) as f:
                current = f.read()
        except OSError:
            current = ""
        if current != text and os.path.isdir(os.path.dirname(path)):
            with open(path, "w") as f:
                f.write(text)
        self._hosts_ok = True

    def program(self, name: str) -> str:
        """Path inside the root of Samba program ``name``."""
        return _PROGRAMS.get(name, "/usr/bin/" + name)

    def command(self, argv: Sequence[str]) -> List[str]:
        """argv running ``argv`` (``argv[0]`` a program name such as "smbd"
        or an absolute path inside the root) in the root."""
        argv = list(argv)
        if not argv[0].startswith("/"):
            argv[0] = self.program(argv[0])
        self._ensure_hosts()
        return [_tool("unshare"), "--mount", "--propagation", "slave", "--",
                "/bin/sh", "-c", _ENTER, "sh", self.path] + argv

    def run(self, argv: Sequence[str], timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        """Run a program in the root; text output captured."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(argv), timeout=timeout, **kwargs)

    @property
    def version(self) -> str:
        """Samba's version string in the root, e.g. "4.22.3-Debian-4.22.3+dfsg-4"."""
        if self._version is None:
            res = self.run(["smbd", "--version"], timeout=30)
            self._version = res.stdout.strip().replace("Version ", "")
        return self._version

    def __repr__(self) -> str:
        return "<SambaRoot %s>" % self.path
