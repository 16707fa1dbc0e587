"""smblayer.fs: the reference file client built on the transport layer.

    with fs.connect("127.0.0.1", "share", username="u", password="p") as tree:
        with tree.open("dir/a.bin", "wb") as f:
            f.write(data)
"""
from __future__ import annotations

import importlib
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Mapping, Optional

from ..config import TimeoutPolicy
from ..loopcheck import check_not_in_loop
from ..registry import get_client
from ..security.auth import check_auth_protocol
from .file import SmbRawFile
from .ops import FileInfo, StatResult
from .deferred import DEFAULT_DEFERRED_CLOSE, DeferredCloses
from .readcache import READ_CACHE
from .dircache import DEFAULT_DIR_CACHE_SIZE, DEFAULT_DIR_CACHE_TTL, DirCache
from .posix import PosixMixin, PosixUnavailableWarning, use_posix
from .session import Session
from .tree import DirEntry, Tree, normpath, outpath

# Loaded on first use (PEP 562): a plain connect needs none of them.
_LAZY = {"DfsTree": ".dfs", "DfsLinkError": ".dfs", "ReferralCache": ".dfs",
         "get_referral": ".dfs", "Watch": ".watch", "WatchEvent": ".watch",
         "ShareInfo": "..rpc"}

if TYPE_CHECKING:
    from ..rpc import ShareInfo
    from .dfs import DfsLinkError, DfsTree, ReferralCache
    from .watch import Watch, WatchEvent


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def connect(host: str, share: str, username: Optional[str] = None,
            password: Optional[str] = None, *, port: int = 445, encrypt: bool = False,
            domain: Optional[str] = None, require_signing: Optional[bool] = None,
            auth_protocol: str = "negotiate", timeout: Optional[float] = None,
            allow_guest: bool = True, durable: bool = True,
            session_class: Optional[type] = None, tree_class: Optional[type] = None,
            server_name: Optional[str] = None,
            dfs: bool = True, dfs_ports: Optional[Mapping[str, int]] = None,
            dfs_hosts: Optional[Mapping[str, str]] = None, posix: bool = False,
            deferred_close: Optional[float] = DEFAULT_DEFERRED_CLOSE,
            read_cache: Optional[int] = READ_CACHE,
            dir_cache: Optional[int] = DEFAULT_DIR_CACHE_SIZE,
            dir_cache_ttl: float = DEFAULT_DIR_CACHE_TTL, **client_options) -> Tree:
    """Get a (shared) client, set up a session and connect to ``share``.
    Closing the returned Tree logs off and releases the client.

    ``auth_protocol``: "negotiate" (SPNEGO: Kerberos if a ticket can be had,
    else NTLM), "kerberos" (never NTLM; ``password=None`` uses the ticket
    cache, ``username=None`` its default principal) or "ntlm"; see
    :class:`Session`.  ``server_name``: the server's name for Kerberos
    (``cifs/<name>``) when ``host`` is an address.  ``timeout=5`` is short for
    ``timeouts=TimeoutPolicy(timeout=5)`` (with ``timeouts`` too, it replaces
    that policy's timeout).  ``durable=False``: open files ask no durable
    handles (they then do not survive a reconnect, except read-only ones
    reopened by path).

    ``session_class`` / ``tree_class``: Session and Tree subclasses to build
    (a protocol package's); ``client_class`` (with the other client options)
    goes to ``get_client``.

    A DFS namespace share comes back as a :class:`~smblayer.fs.dfs.DfsTree`
    that follows DFS links (``dfs=False``: the plain Tree).  A referral names
    a host without a port: ``dfs_ports`` maps a target host to its port
    (default: ours for our host, else 445), ``dfs_hosts`` to the address to
    connect to (default: the name).

    ``allow_guest=False``: refuse (SmbAuthError) a guest session the server
    gives instead of logging on ``username``; see :class:`Session`.

    ``posix=True``: use the SMB3 POSIX extensions (3.1.1; Samba >= 4.20
    with ``smb3 unix extensions = yes``): server modes, owners and link
    counts in ``stat``, ``chmod``/``chown``, case-sensitive names.  A server
    that does not offer them gets a :class:`PosixUnavailableWarning` and the
    tree works without (``tree.posix`` is False); see
    :mod:`smblayer.fs.posix`.

    ``deferred_close``: seconds a file's handle held under a lease with
    handle caching stays open after ``close()`` for the next open of that
    path to reuse with no round trip (0 or None: close at once); a written
    file's data and write time are on the server when ``close()`` returns;
    see :mod:`smblayer.fs.deferred`.

    ``read_cache``: bytes of a file (default 64 KiB) a handle holding a
    read lease keeps of what was last read from it; a read of that range
    through the handle (a kept one reused after ``close()`` too) is served
    with no round trip while the lease holds and nothing that may change
    a file went through this client (0 or None: off); see
    :mod:`smblayer.fs.deferred`.

    ``dir_cache``: directories whose listing and entries' attributes the
    tree keeps while the server's directory lease holds (default 16; 0 or
    None: off), each at most ``dir_cache_ttl`` seconds (30); only where the
    server grants directory leases (Samba 4.22); see
    :mod:`smblayer.fs.dircache`.

    ``multichannel=True`` (``max_channels=N``, default 4, channel 0
    included): SMB 3.x multichannel; after the session is up, more
    connections to the addresses the server lists are bound to it and READ
    and WRITE spread over them; a lost channel's requests move to another
    one.  A dialect before 3.0, a server without the capability, or a guest
    session raises :class:`~smblayer.errors.SmbMultichannelError`.  See
    :mod:`smblayer.transport.channels`."""
    check_not_in_loop()           # before the connect blocks: use smblayer.aio.connect
    check_auth_protocol(auth_protocol)
    cls = session_class or Session
    if not (isinstance(cls, type) and issubclass(cls, Session)):
        raise TypeError("session_class must be Session or a subclass")
    if timeout is not None:
        policy = client_options.get("timeouts") or TimeoutPolicy()
        client_options["timeouts"] = policy.with_(timeout=timeout)
    # a POSIX client is part of the sharing key: never shared with one that is not
    client = get_client(host, port, **client_options, **({"posix": True} if posix else {}))
    try:
        session = cls(client, username, password, domain=domain, encrypt=encrypt,
                      require_signing=require_signing, auth_protocol=auth_protocol,
                      server_name=server_name, allow_guest=allow_guest)
        try:
            tree = session.tree_connect(share, tree_class=tree_class)
        except BaseException:
            session.logoff()
            raise
    except BaseException:
        client.release()
        raise
    tree._owns_session = True
    tree.durable = durable
    tree.deferred_close = deferred_close
    tree.read_cache = read_cache
    tree.dir_cache_size, tree.dir_cache_ttl = dir_cache, dir_cache_ttl
    if posix:
        use_posix(tree)
    if client.multichannel and client.channel_session is None:
        from .binding import start_multichannel
        try:
            start_multichannel(tree)
        except BaseException:
            tree.close()
            raise
    if dfs and tree.dfs:
        from .dfs import DfsTree
        return DfsTree(tree, _target_connector(
            username, password, encrypt=encrypt, domain=domain, require_signing=require_signing,
            auth_protocol=auth_protocol, allow_guest=allow_guest, durable=durable,
            deferred_close=deferred_close, read_cache=read_cache, posix=posix, dir_cache=dir_cache,
            dir_cache_ttl=dir_cache_ttl, session_class=session_class,
            tree_class=tree_class, **client_options), ports=dfs_ports, hosts=dfs_hosts)
    return tree


def _target_connector(username, password, **kwargs):
    """connect(address, port, share, server_name) for DFS targets: the
    caller's credentials and options, DFS off (the DfsTree follows)."""
    def connect_target(address: str, port: int, share: str, server_name: str) -> Tree:
        return connect(address, share, username, password, port=port,
                       server_name=server_name, dfs=False, **kwargs)
    return connect_target


def connect_namespace(domain: str, namespace: str, dc: str, username: Optional[str] = None,
                      password: Optional[str] = None, *, port: int = 445,
                      dfs_ports: Optional[Mapping[str, int]] = None,
                      dfs_hosts: Optional[Mapping[str, str]] = None, **kwargs) -> "DfsTree":
    """A domain-based DFS namespace ``\\\\domain\\namespace``: the domain
    controller ``dc`` (an address or name, ``port``) gives the root referral;
    the first reachable root target (failover) becomes a DfsTree that follows
    the namespace's links.  Other arguments as for :func:`connect`."""
    from .dfs import DfsTree, get_referral
    connector = _target_connector(username, password, **kwargs)
    dc_tree = connect(dc, "IPC$", username, password, port=port, dfs=False, **kwargs)
    try:
        referral = get_referral(dc_tree.session, f"\\{domain}\\{namespace}", dc_tree)
    finally:
        dc_tree.close()
    return DfsTree.from_referral(referral, connector, ports=dfs_ports, hosts=dfs_hosts,
                                 default_port=port)


def list_shares(host: str, username: Optional[str] = None, password: Optional[str] = None, *,
                port: int = 445, retries: int = 2, **connect_options) -> list:
    """The server's shares (DCE/RPC srvsvc NetrShareEnum level 1 over the
    IPC$ named pipe), like ``smbclient -L``: a list of
    :class:`~smblayer.rpc.ShareInfo` (name, type, comment), on every
    dialect (SMB1: the pipe through TRANSACTION; a server without the
    srvsvc pipe is asked by RAP NetShareEnum, as smbclient does).
    A connection lost mid-call (the pipe and its binding die with it) is
    retried ``retries`` times from the bind."""
    from ..errors import SmbConnectionError, SmbError
    from ..rpc import open_srvsvc, share_enum
    with connect(host, "IPC$", username, password, port=port, **connect_options) as ipc:
        for attempt in range(retries + 1):
            generation = ipc.client.generation
            try:
                with open_srvsvc(ipc) as pipe:
                    return share_enum(pipe, "\\\\" + host)
            except FileNotFoundError:
                if not ipc.client.dialect.is_smb1:
                    raise
                from ..rpc.rap import rap_share_enum
                return rap_share_enum(ipc)
            except SmbError as exc:
                # Lost with the connection: the transport says so, or the
                # server answers STATUS_FILE_CLOSED to a request for the old
                # pipe that first went out on the new connection.
                lost = isinstance(exc, SmbConnectionError) or \
                    ipc.client.generation != generation
                if attempt == retries or not lost:
                    raise
    raise AssertionError("unreachable")


__all__ = ["connect", "connect_namespace", "DfsTree", "DfsLinkError", "ReferralCache", "list_shares", "ShareInfo", "Watch", "WatchEvent", "Session", "Tree", "PosixMixin", "PosixUnavailableWarning", "use_posix", "DeferredCloses", "DirCache",
           "SmbRawFile", "DirEntry", "FileInfo", "StatResult", "normpath", "outpath"]
