"""A private Samba with a share for administrators' features, and Samba's
``smbcacls`` pointed at it.

Theory of operation
-------------------
:class:`AdminSamba` starts a :class:`~smblayer.testing.samba.SambaServer`
with one more share, ``admin``, whose ``vfs objects`` are:

* ``acl_xattr`` -- NT ACLs stored in an extended attribute (full security
  descriptors, as Windows has them);
* ``streams_xattr`` -- alternate data streams ("file:name");
* ``shadow_copy2`` -- previous versions: a directory
  ``<share>/.snapshots/@GMT-YYYY.MM.DD-HH.MM.SS`` holding a copy of the share
  is one snapshot (``snapshot()`` makes one from the share as it is).

The server grants durable handles (``DURABLE_OPTIONS``), so locks can be
tried across a reconnect.  The share's directory is outside the server's
temp dir because shadow_copy2 needs it as its mount point.

``smbcacls`` (Samba 4.17) connects to port 445 only.  ``smbcacls(...)``
therefore runs it against a :class:`~smblayer.testing.proxy.FaultProxy`
listening on port 445 of a random 127.x.y.z address (root only: a port below
1024) that forwards to the server.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from typing import Optional, Sequence

from .proxy import FaultProxy
from .samba import DURABLE_OPTIONS, SambaServer

SNAPSHOT_DIR = ".snapshots"


def admin_share_options(path: str) -> dict:
    """smb.conf options of the ``admin`` share at ``path``."""
    return {
        "path": path, "read only": "no", "browseable": "yes",
        "vfs objects": "acl_xattr streams_xattr shadow_copy2",
        "shadow:mountpoint": path, "shadow:basedir": path,
        "shadow:snapdir": os.path.join(path, SNAPSHOT_DIR),
        "shadow:format": "@GMT-%Y.%m.%d-%H.%M.%S", "shadow:sort": "desc",
        "shadow:localtime": "no", "store dos attributes": "yes",
    }


class AdminSamba:
    """A started SambaServer (``.server``) with the ``admin`` share at
    ``.path``; a context manager that stops it and removes the share."""

    share = "admin"

    def __init__(self, **kwargs) -> None:
        self._base = tempfile.mkdtemp(prefix="smbl-admin-")
        self.path = os.path.join(self._base, self.share)
        os.makedirs(os.path.join(self.path, SNAPSHOT_DIR))
        extra_global = dict(DURABLE_OPTIONS)
        extra_global.update(kwargs.pop("extra_global", {}))
        self.server = SambaServer(extra_global=extra_global,
                                  extra_shares={self.share: admin_share_options(self.path)},
                                  **kwargs)
        self._proxy: Optional[FaultProxy] = None

    def __enter__(self) -> "AdminSamba":
        try:
            self.server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        self.server.stop()
        shutil.rmtree(self._base, ignore_errors=True)

    def local(self, *names: str) -> str:
        """The path of share path ``names`` on the server's disk."""
        return os.path.join(self.path, *names)

    def snapshot(self, when: Optional[float] = None) -> str:
        """Copy the share (without older snapshots) into a new snapshot
        directory; returns its @GMT token."""
        when = int(time.time() if when is None else when)
        while True:                       # one snapshot per second: the next free one
            token = time.strftime("@GMT-%Y.%m.%d-%H.%M.%S", time.gmtime(when))
            target = os.path.join(self.path, SNAPSHOT_DIR, token)
            if not os.path.exists(target):
                break
            when -= 1
        shutil.copytree(self.path, target, symlinks=True,
                        ignore=lambda d, names: [SNAPSHOT_DIR] if d == self.path else [])
        return token

    def _proxy_host(self) -> str:
        if self._proxy is None:
            for _ in range(5):
                host = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 254),
                                         random.randint(2, 254))
                try:
                    self._proxy = FaultProxy(self.server.host, self.server.port,
                                             listen_host=host, listen_port=445)
                    break
                except OSError:
                    continue
            else:
                raise RuntimeError("no 127.x.y.z:445 free for smbcacls' proxy")
        return self._proxy.host

    def smbcacls(self, path: str, args: Sequence[str] = (), timeout: float = 60
                 ) -> subprocess.CompletedProcess:
        """Run Samba's ``smbcacls`` on share path ``path`` (text output)."""
        exe = shutil.which("smbcacls")
        if exe is None:
            raise RuntimeError("smbcacls not found (install smbclient)")
        argv = [exe, "//%s/%s" % (self._proxy_host(), self.share), path,
                "-s", self.server.client_conf_path, "-A", self.server.auth_file] + list(args)
        return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL)


__all__ = ["AdminSamba", "admin_share_options", "SNAPSHOT_DIR"]
