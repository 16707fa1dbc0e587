"""smblayer.fs: the reference file client built on the transport layer.

    with fs.connect("127.0.0.1", "share", username="u", password="p") as tree:
        with tree.open("dir/a.bin", "wb") as f:
            f.write(data)
"""
from __future__ import annotations

from typing import Mapping, Optional

from ..registry import get_client
from .dfs import DfsTree, ReferralCache
from .file import SmbRawFile
from .ops import FileInfo, StatResult
from .session import Session
from .tree import DirEntry, Tree, normpath


def connect(host: str, share: str, username: Optional[str] = None,
            password: Optional[str] = None, *, port: int = 445, encrypt: bool = False,
            domain: Optional[str] = None, require_signing: Optional[bool] = None,
            auth_protocol: str = "negotiate", dfs: bool = True,
            dfs_ports: Optional[Mapping[str, int]] = None, **client_options) -> Tree:
    """Get a (shared) client, set up a session and connect to ``share``.
    Closing the returned Tree logs off and releases the client.
    ``auth_protocol``: "negotiate" (Kerberos if a ticket can be had, else
    NTLM), "kerberos" (never NTLM; ``password=None`` uses the ticket cache,
    ``username=None`` its default principal) or "ntlm".
    A DFS namespace share comes back as a :class:`~smblayer.fs.dfs.DfsTree`
    that follows DFS links (``dfs=False``: the plain Tree); ``dfs_ports``
    maps a DFS target host to its port (default: ours for our host, else 445)."""
    client = get_client(host, port, **client_options)
    try:
        session = Session(client, username, password, domain=domain, encrypt=encrypt,
                          require_signing=require_signing, auth_protocol=auth_protocol)
        try:
            tree = session.tree_connect(share)
        except BaseException:
            session.logoff()
            raise
    except BaseException:
        client.release()
        raise
    tree._owns_session = True
    if dfs and tree.dfs:
        def connect_target(t_host: str, t_port: int, t_share: str) -> Tree:
            return connect(t_host, t_share, username, password, port=t_port, encrypt=encrypt,
                           domain=domain, require_signing=require_signing,
                           auth_protocol=auth_protocol, dfs=False, **client_options)
        return DfsTree(tree, connect_target, ports=dfs_ports)
    return tree


__all__ = ["connect", "Session", "Tree", "DfsTree", "ReferralCache", "SmbRawFile", "DirEntry", "FileInfo", "StatResult",
           "normpath"]
