"""smblayer.fs: the reference file client built on the transport layer.

    with fs.connect("127.0.0.1", "share", username="u", password="p") as tree:
        with tree.open("dir/a.bin", "wb") as f:
            f.write(data)
"""
from __future__ import annotations

from typing import Optional

from ..config import TimeoutPolicy
from ..registry import get_client
from ..security import check_auth_protocol
from .file import SmbRawFile
from .ops import FileInfo, StatResult
from .session import Session
from .tree import DirEntry, Tree, normpath, outpath
from .watch import Watch, WatchEvent
from ..rpc import ShareInfo


def connect(host: str, share: str, username: Optional[str] = None,
            password: Optional[str] = None, *, port: int = 445, encrypt: bool = False,
            domain: Optional[str] = None, require_signing: Optional[bool] = None,
            auth_protocol: str = "negotiate", timeout: Optional[float] = None,
            durable: bool = True, session_class: Optional[type] = None,
            tree_class: Optional[type] = None, **client_options) -> Tree:
    """Get a (shared) client, set up a session and connect to ``share``.
    Closing the returned Tree logs off and releases the client.
    ``auth_protocol``: "negotiate" (SPNEGO), "kerberos" (never NTLM) or
    "ntlm"; see :class:`Session`.  ``timeout=5`` is short for
    ``timeouts=TimeoutPolicy(timeout=5)`` (with ``timeouts`` too, it replaces
    that policy's timeout).  ``durable=False``: open files ask no durable
    handles (they then do not survive a reconnect, except read-only ones
    reopened by path).

    ``session_class`` / ``tree_class``: Session and Tree subclasses to build
    (a protocol package's); ``client_class`` (with the other client options)
    goes to ``get_client``."""
    check_auth_protocol(auth_protocol)
    cls = session_class or Session
    if not (isinstance(cls, type) and issubclass(cls, Session)):
        raise TypeError("session_class must be Session or a subclass")
    if timeout is not None:
        policy = client_options.get("timeouts") or TimeoutPolicy()
        client_options["timeouts"] = policy.with_(timeout=timeout)
    client = get_client(host, port, **client_options)
    try:
        session = cls(client, username, password, domain=domain, encrypt=encrypt,
                      require_signing=require_signing, auth_protocol=auth_protocol)
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
    return tree


def list_shares(host: str, username: Optional[str] = None, password: Optional[str] = None, *,
                port: int = 445, retries: int = 2, **connect_options) -> list:
    """The server's shares (DCE/RPC srvsvc NetrShareEnum level 1 over the
    IPC$ named pipe), like ``smbclient -L``: a list of
    :class:`~smblayer.rpc.ShareInfo` (name, type, comment).  SMB 2.0.2+.
    A connection lost mid-call (the pipe and its binding die with it) is
    retried ``retries`` times from the bind."""
    from ..errors import SmbConnectionError
    from ..rpc import open_srvsvc, share_enum
    with connect(host, "IPC$", username, password, port=port, **connect_options) as ipc:
        if ipc.client.dialect.is_smb1:
            raise ValueError("list_shares needs SMB 2.0.2 or later")
        for attempt in range(retries + 1):
            try:
                with open_srvsvc(ipc) as pipe:
                    return share_enum(pipe, "\\\\" + host)
            except SmbConnectionError:
                if attempt == retries:
                    raise
    raise AssertionError("unreachable")


__all__ = ["connect", "list_shares", "ShareInfo", "Watch", "WatchEvent", "Session", "Tree",
           "SmbRawFile", "DirEntry", "FileInfo", "StatResult", "normpath", "outpath"]
