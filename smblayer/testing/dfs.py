"""A standalone DFS namespace for tests: a private smbd whose share ``dfs``
is an ``msdfs root`` with links to another share on the same server, to a
second private smbd, to a dead target with a live fallback, to a dead target
only, and to itself (a referral loop).

A referral names ``\\\\host\\share`` without a port; the second server is
named ``localhost`` and the dead target ``127.0.0.2``, and
:attr:`DfsNamespace.ports` maps those names to their ports for
``fs.connect(..., dfs_ports=ns.ports)``.  Links to ``127.0.0.1`` reuse the
port of the connection (the root server's).
"""
from __future__ import annotations

import os
import socket
from typing import Dict, Optional

from .samba import SambaServer

__all__ = ["DfsNamespace"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DfsNamespace:
    """``root`` (share ``dfs``, links below) and ``second`` servers.

    Links in ``dfs``:  ``local`` -> ``\\\\127.0.0.1\\share`` (same server),
    ``remote`` -> ``\\\\localhost\\share`` (the second server),
    ``failover`` -> ``\\\\127.0.0.2\\share`` (dead), then
    ``\\\\127.0.0.1\\readonly``; ``dead`` -> ``\\\\127.0.0.2\\share`` only;
    ``loop`` -> ``\\\\127.0.0.1\\dfs\\loop`` (itself)."""

    LINKS = {
        "local": "127.0.0.1\\share",
        "remote": "localhost\\share",
        "failover": "127.0.0.2\\share,127.0.0.1\\readonly",
        "dead": "127.0.0.2\\share",
        "loop": "127.0.0.1\\dfs\\loop",
    }

    def __init__(self, **server_kwargs) -> None:
        extra_global = dict(server_kwargs.pop("extra_global", {}) or {})
        extra_global["host msdfs"] = "yes"
        extra_shares = dict(server_kwargs.pop("extra_shares", {}) or {})
        extra_shares["dfs"] = {"msdfs root": "yes", "read only": "no"}
        self.root = SambaServer(extra_global=extra_global, extra_shares=extra_shares,
                                **server_kwargs)
        self.second = SambaServer(**server_kwargs)
        self.dead_port: Optional[int] = None

    @property
    def ports(self) -> Dict[str, int]:
        """DFS target host -> port, for ``fs.connect(dfs_ports=...)``."""
        return {"localhost": self.second.port, "127.0.0.2": self.dead_port}

    def start(self) -> "DfsNamespace":
        try:
            self.root.start()
            self.second.start()
            self.dead_port = _closed_port()
            root = self.root.share_path("dfs")
            for name, target in self.LINKS.items():
                os.symlink("msdfs:" + target, root / name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.second.stop()
        self.root.stop()

    def __enter__(self) -> "DfsNamespace":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
