"""smblayer.fs: the reference file client built on the transport layer.

    with fs.connect("127.0.0.1", "share", username="u", password="p") as tree:
        with tree.open("dir/a.bin", "wb") as f:
            f.write(data)
"""
from __future__ import annotations

from typing import Mapping, Optional

from ..config import TimeoutPolicy
from ..registry import get_client
from ..security import check_auth_protocol
from .dfs import DfsTree, ReferralCache, get_referral
from .file import SmbRawFile
from .ops import FileInfo, StatResult
from .session import Session
from .tree import DirEntry, Tree, normpath, outpath


def connect(host: str, share: str, username: Optional[str] = None,
            password: Optional[str] = None, *, port: int = 445, encrypt: bool = False,
            domain: Optional[str] = None, require_signing: Optional[bool] = None,
            auth_protocol: str = "negotiate", timeout: Optional[float] = None,
            server_name: Optional[str] = None, dfs: bool = True,
            dfs_ports: Optional[Mapping[str, int]] = None,
            dfs_hosts: Optional[Mapping[str, str]] = None, **client_options) -> Tree:
    """Get a (shared) client, set up a session and connect to ``share``.
    Closing the returned Tree logs off and releases the client.

    ``auth_protocol``: "negotiate" (SPNEGO: Kerberos if a ticket can be had,
    else NTLM), "kerberos" (never NTLM; ``password=None`` uses the ticket
    cache, ``username=None`` its default principal) or "ntlm"; see
    :class:`Session`.  ``timeout=5`` is short for
    ``timeouts=TimeoutPolicy(timeout=5)`` (with ``timeouts`` too, it replaces
    that policy's timeout).  ``server_name``: the server's name for Kerberos
    (``cifs/<name>``) when ``host`` is an address.

    A DFS namespace share comes back as a :class:`~smblayer.fs.dfs.DfsTree`
    that follows DFS links (``dfs=False``: the plain Tree).  A referral names
    a host without a port: ``dfs_ports`` maps a target host to its port
    (default: ours for our host, else 445), ``dfs_hosts`` to the address to
    connect to (default: the name)."""
    check_auth_protocol(auth_protocol)
    if timeout is not None:
        policy = client_options.get("timeouts") or TimeoutPolicy()
        client_options["timeouts"] = policy.with_(timeout=timeout)
    client = get_client(host, port, **client_options)
    try:
        session = Session(client, username, password, domain=domain, encrypt=encrypt,
                          require_signing=require_signing, auth_protocol=auth_protocol,
                          server_name=server_name)
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
        return DfsTree(tree, _target_connector(username, password, encrypt=encrypt,
                                               domain=domain, require_signing=require_signing,
                                               auth_protocol=auth_protocol, **client_options),
                       ports=dfs_ports, hosts=dfs_hosts)
    return tree


def _target_connector(username, password, **kwargs):
    """connect(address, port, share, server_name) for DFS targets: the
    caller's credentials and client options, DFS off (the DfsTree follows)."""
    def connect_target(address: str, port: int, share: str, server_name: str) -> Tree:
        return connect(address, share, username, password, port=port,
                       server_name=server_name, dfs=False, **kwargs)
    return connect_target


def connect_namespace(domain: str, namespace: str, dc: str, username: Optional[str] = None,
                      password: Optional[str] = None, *, port: int = 445,
                      dfs_ports: Optional[Mapping[str, int]] = None,
                      dfs_hosts: Optional[Mapping[str, str]] = None, **kwargs) -> DfsTree:
    """A domain-based DFS namespace ``\\\\domain\\namespace``: the domain
    controller ``dc`` (an address or name, ``port``) gives the root referral;
    the first reachable root target (failover) becomes a DfsTree that follows
    the namespace's links.  Other arguments as for :func:`connect`."""
    connector = _target_connector(username, password, **kwargs)
    dc_tree = connect(dc, "IPC$", username, password, port=port, dfs=False, **kwargs)
    try:
        referral = get_referral(dc_tree.session, f"\\{domain}\\{namespace}", dc_tree)
    finally:
        dc_tree.close()
    return DfsTree.from_referral(referral, connector, ports=dfs_ports, hosts=dfs_hosts,
                                 default_port=port)


__all__ = ["connect", "connect_namespace", "Session", "Tree", "DfsTree", "ReferralCache",
           "SmbRawFile", "DirEntry", "FileInfo", "StatResult", "normpath", "outpath"]
